import { parseDigest } from "../core/digest.js";
import { TabbifyError } from "../core/errors.js";
import type { StorageDriver } from "../storage/driver.js";
import { layout } from "./layout.js";
import { type Descriptor, mediaTypes } from "./manifests.js";
import { checkName, isValidName, requestDigest } from "./names.js";

/** Referrers listed per page when the client does not ask for fewer: keeps an index well under 4 MiB. */
export const maxReferrersPage = 1000;

/** Which repositories a catalog listing may show (a tenant's, maybe fewer). */
export interface CatalogScope {
  /** The tenant: only names under `<under>/`. */
  under: string;
  /** A further filter (a robot token's pull scopes). */
  keep?: (name: string) => boolean;
}

export interface Page<T> {
  items: T[];
  /** Set when more items follow: the `last` to ask for the next page with. */
  next?: string;
}

/** Discovery in the repository service: tag lists, the catalog and referrers, each paged. */
export class RepositoryListings {
  constructor(private readonly driver: StorageDriver) {}

  async repositoryExists(name: string): Promise<boolean> {
    const children = await this.driver.list(layout.repository(name));
    return children.some((c) => c === "_manifests" || c === "_layers");
  }

  async listTags(name: string, n?: number, last?: string): Promise<Page<string>> {
    checkName(name);
    if (!(await this.repositoryExists(name))) {
      throw new TabbifyError("NAME_UNKNOWN", `repository ${name} is not known`, { name });
    }
    const tags: string[] = [];
    for (const tag of await this.driver.list(layout.tagsRoot(name))) {
      if (await this.driver.stat(layout.tagLink(name, tag))) tags.push(tag);
    }
    return paginate(tags, n, last);
  }

  /**
   * Every repository, sorted: directories under `repositories/` that hold `_manifests` or
   * `_layers`; with `scope`, only those under `<scope.under>/` that `scope.keep` accepts (the
   * walk starts there, so other tenants' directories are not even read).
   */
  async listRepositories(n?: number, last?: string, scope?: CatalogScope): Promise<Page<string>> {
    const names: string[] = [];
    const walk = async (prefix: string, path: string): Promise<void> => {
      const children = await this.driver.list(path);
      if (children.some((c) => c === "_manifests" || c === "_layers")) names.push(prefix);
      for (const child of children) {
        if (child.startsWith("_")) continue;
        await walk(prefix ? `${prefix}/${child}` : child, `${path}/${child}`);
      }
    };
    if (scope) {
      if (!isValidName(scope.under) || scope.under.includes("/")) return { items: [] };
      for (const child of await this.driver.list(`${layout.repositoriesRoot}/${scope.under}`)) {
        if (child.startsWith("_")) continue;
        await walk(`${scope.under}/${child}`, `${layout.repositoriesRoot}/${scope.under}/${child}`);
      }
    } else {
      await walk("", layout.repositoriesRoot);
    }
    const kept = scope?.keep ? names.filter(scope.keep) : names;
    return paginate(kept.sort(), n, last);
  }

  /**
   * Manifests in `name` whose subject is `digest`, as an OCI image index, sorted by digest and
   * paged like tag lists: at most `n` entries (default and ceiling `maxReferrersPage`) after
   * `last`, with `next` set when more follow.
   */
  async referrers(
    name: string,
    digest: string,
    opts: { artifactType?: string; n?: number; last?: string } = {},
  ): Promise<{ index: { mediaType: string; schemaVersion: 2; manifests: Descriptor[] }; next?: string }> {
    checkName(name);
    const subject = requestDigest(digest);
    const root = layout.referrersOf(name, subject);
    const manifests: Descriptor[] = [];
    for (const alg of await this.driver.list(root)) {
      for (const hex of await this.driver.list(`${root}/${alg}`)) {
        if (opts.last !== undefined && `${alg}:${hex}` <= opts.last) continue;
        const raw = await this.driver.getContent(`${root}/${alg}/${hex}/link`);
        if (!raw) continue;
        const entry = JSON.parse(raw.toString("utf8")) as Descriptor;
        // A referrer whose manifest was deleted behind our back is not listed.
        if (!(await this.driver.stat(layout.revisionLink(name, parseDigest(entry.digest))))) continue;
        if (opts.artifactType !== undefined && entry.artifactType !== opts.artifactType) continue;
        manifests.push(entry);
      }
    }
    manifests.sort((a, b) => (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0));
    const n = Math.min(opts.n ?? maxReferrersPage, maxReferrersPage);
    const page = manifests.slice(0, n);
    const index = { schemaVersion: 2 as const, mediaType: mediaTypes.ociIndex, manifests: page };
    return manifests.length > n && page.length > 0
      ? { index, next: page[page.length - 1]!.digest }
      : { index };
  }
}

function paginate(sorted: string[], n?: number, last?: string): Page<string> {
  const after = last === undefined ? sorted : sorted.filter((s) => s > last);
  if (n === undefined || after.length <= n) return { items: after };
  const items = after.slice(0, n);
  const page: Page<string> = { items };
  if (items.length > 0) page.next = items[items.length - 1]!;
  return page;
}
