import type { ComponentType } from "preact";
import { lazy } from "preact-iso";
import { AppPage } from "./pages/app";
import { AppsPage } from "./pages/apps";
import { DeployPage } from "./pages/deploy";
import { DevicePage } from "./pages/device";
import { LoginPage } from "./pages/login";

/**
 * Every page of the dashboard: one line each. A path's first segment must be listed in
 * src/dashboard/paths.ts (`dashboardSections`), or the node will not serve the page on a reload.
 * `nav` puts it in the top navigation; `public` pages render without a session.
 */
export interface PageRoute {
  path: string;
  // biome-ignore lint/suspicious/noExplicitAny: preact-iso hands each page its route params.
  component: ComponentType<any>;
  nav?: string;
  public?: boolean;
  /** Node key only: the node refuses a tenant's token on its API, so a tenant is not shown the link. */
  nodeKeyOnly?: boolean;
}

export const routes: PageRoute[] = [
  { path: "/login", component: LoginPage, public: true },
  { path: "/apps", component: AppsPage, nav: "Apps" },
  { path: "/apps/:app", component: AppPage },
  { path: "/apps/:app/deploys/:id", component: DeployPage },
  { path: "/device", component: DevicePage },
  { path: "/review/:id", component: lazy(() => import("./pages/review").then((m) => m.ReviewPage)) },
  {
    path: "/proofs",
    component: lazy(() => import("./pages/proofs").then((m) => m.ProofsPage)),
    nav: "Proofs",
  },
  {
    path: "/proofs/:project",
    component: lazy(() => import("./pages/proofs").then((m) => m.ProjectProofsPage)),
  },
  {
    path: "/registry",
    component: lazy(() => import("./pages/registry").then((m) => m.RegistryPage)),
    nav: "Registry",
  },
  {
    path: "/audit",
    component: lazy(() => import("./pages/audit").then((m) => m.AuditPage)),
    nav: "Audit",
    nodeKeyOnly: true,
  },
  {
    path: "/topology",
    component: lazy(() => import("./pages/topology").then((m) => m.TopologyPage)),
    nav: "Topology",
    nodeKeyOnly: true,
  },
];
