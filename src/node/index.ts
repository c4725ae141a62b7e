export { APP_PREFIX, AppProxy } from "./proxy.js";
export {
  type DataPlane,
  dataPlanes,
  type NodeDeployOptions,
  type NodeOptions,
  type RunningNode,
  startNode,
} from "./server.js";
