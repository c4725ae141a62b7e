import { caddyEngine } from "./caddy-config.js";
import type { EdgeEngine, EngineName } from "./engine.js";
import { haproxyEngine } from "./haproxy-config.js";
import { nginxEngine } from "./nginx-config.js";

export type { EdgeRoute, EngineName } from "./engine.js";

const engines: Record<EngineName, EdgeEngine> = {
  nginx: nginxEngine,
  caddy: caddyEngine,
  haproxy: haproxyEngine,
};

/** The engine behind `--data-plane <name>`. */
export function engineFor(name: EngineName): EdgeEngine {
  return engines[name];
}
