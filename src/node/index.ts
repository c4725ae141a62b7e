export { APP_PREFIX, AppProxy } from "./proxy.js";
export { type NodeOptions, type RunningNode, startNode } from "./server.js";
