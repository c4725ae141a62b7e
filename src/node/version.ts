import { tabbifyVersion } from "../core/version.js";

/** The package version the node reports. */
export const nodeVersion: string = tabbifyVersion;
