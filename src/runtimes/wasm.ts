/**
 * The `wasm` runtime: a WAGI/CGI-style WASI preview1 module served per request by a child
 * process (wasm-host.js), so a wasm workload has a pid, an exit and a stop like any other.
 */
import { readFile, stat } from "node:fs/promises";
import { isAbsolute, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { TabbifyError } from "../core/errors.js";
import {
  ChildWorkload,
  checkCommonSpec,
  checkPort,
  type RuntimeOptions,
  spawnInGroup,
  workloadEnv,
} from "./child.js";
import type { Runtime, Workload, WorkloadSpec } from "./runtime.js";
import { checkWasiModule, WASM_PAGE_BYTES } from "./wasm-module.js";

export const DEFAULT_WASM_TIMEOUT_MS = 10_000;
export const DEFAULT_WASM_MEMORY_MB = 64;
const hostScript = fileURLToPath(new URL("./wasm-host.js", import.meta.url));

interface CheckedSpec {
  modulePath: string;
  bytes: Buffer;
  timeoutMs: number;
  memoryMb: number;
}

export class WasmRuntime implements Runtime {
  readonly kind = "wasm" as const;

  constructor(private readonly options: RuntimeOptions & { workers?: number } = {}) {}

  async available(): Promise<boolean> {
    return true;
  }

  async validate(spec: WorkloadSpec): Promise<void> {
    await this.check(spec);
  }

  private async check(spec: WorkloadSpec): Promise<CheckedSpec> {
    checkCommonSpec(spec, this.kind);
    const { artifactDir, entry, limits } = spec;
    if (typeof artifactDir !== "string" || artifactDir === "") {
      throw new TabbifyError("SPEC_INVALID", "wasm runtime needs artifactDir");
    }
    if (typeof entry !== "string" || entry === "") {
      throw new TabbifyError("SPEC_INVALID", "wasm runtime needs entry: the module file in artifactDir");
    }
    for (const field of ["command", "image", "imageArchive"] as const) {
      if (spec[field] !== undefined)
        throw new TabbifyError("SPEC_INVALID", `wasm runtime does not take ${field}`);
    }
    const timeoutMs = limits?.timeoutMs ?? DEFAULT_WASM_TIMEOUT_MS;
    const memoryMb = limits?.memoryMb ?? DEFAULT_WASM_MEMORY_MB;
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1) {
      throw new TabbifyError("SPEC_INVALID", "limits.timeoutMs must be a positive integer");
    }
    if (!Number.isFinite(memoryMb) || memoryMb <= 0 || memoryMb > 4096) {
      throw new TabbifyError("SPEC_INVALID", "limits.memoryMb must be in (0, 4096]");
    }
    const root = resolve(artifactDir);
    const modulePath = resolve(root, entry);
    if (isAbsolute(entry) || !modulePath.startsWith(`${root}/`)) {
      throw new TabbifyError("SPEC_INVALID", `entry "${entry}" must be a path inside artifactDir`);
    }
    const info = await stat(modulePath).catch(() => undefined);
    if (!info?.isFile())
      throw new TabbifyError("ARTIFACT_NOT_FOUND", `wasm module ${modulePath} does not exist`);
    const bytes = await readFile(modulePath);
    await checkWasiModule(bytes, memoryMb);
    return { modulePath, bytes, timeoutMs, memoryMb };
  }

  async start(spec: WorkloadSpec, port: number): Promise<Workload> {
    checkPort(port);
    const { modulePath, bytes, timeoutMs, memoryMb } = await this.check(spec);
    const env = workloadEnv(undefined, port);
    env.TABBIFY_WASM_ENV = JSON.stringify(spec.env ?? {});
    const pages = Math.ceil((memoryMb * 1024 * 1024) / WASM_PAGE_BYTES);
    const args = [
      // Belt and braces: V8 caps every wasm memory in the host, whatever the module declares.
      `--wasm-max-mem-pages=${pages}`,
      "--disable-warning=ExperimentalWarning",
      hostScript,
      "--module",
      modulePath,
      "--timeout-ms",
      String(timeoutMs),
      "--memory-mb",
      String(memoryMb),
    ];
    if (this.options.workers !== undefined) args.push("--workers", String(this.options.workers));
    const child = await spawnInGroup(process.execPath, args, {
      cwd: resolve(spec.artifactDir!),
      env,
      output: this.options.output,
    });
    const workload = new ChildWorkload(child, { host: "127.0.0.1", port });
    // Hashed while the host boots; loading node:crypto before the spawn would delay it.
    workload.version = (await import("../core/digest.js")).digestOf(bytes);
    return workload;
  }
}
