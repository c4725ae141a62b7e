import { access } from "node:fs/promises";

/**
 * Whether something is at `path` (symlinks followed). False for any error, a path we may not
 * look into included: callers ask "can I find it", not "why not".
 */
export function pathExists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}
