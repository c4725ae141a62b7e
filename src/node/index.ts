export { APP_PREFIX, AppProxy } from "./proxy.js";
export { type NodeDeployOptions, type NodeOptions, type RunningNode, startNode } from "./server.js";
