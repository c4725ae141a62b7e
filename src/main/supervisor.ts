// Placeholder until this role lands; replaced wholesale by its composition root.
import { TabbifyError } from "../core/errors.js";

export async function run(_argv: string[], _env: NodeJS.ProcessEnv): Promise<number> {
  throw new TabbifyError("NOT_IMPLEMENTED", "tabbify supervisor is not implemented yet");
}
