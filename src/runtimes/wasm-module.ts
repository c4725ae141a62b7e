/**
 * What the wasm runtime checks in a module before running it: that it is a core WASI preview1
 * module (not a component), what it imports, and that every memory declares a maximum within
 * the limit. node:wasi cannot cap a memory that has no maximum (worker resourceLimits do not
 * apply to wasm memory), so such modules are refused at validate time instead.
 */
import { TabbifyError } from "../core/errors.js";
import { type WasmModule, wasmApi } from "./wasm-api.js";

export const WASM_PAGE_BYTES = 64 * 1024;

export interface MemoryLimits {
  minPages: number;
  /** Undefined when the module declares none. */
  maxPages: number | undefined;
  imported: boolean;
}

class Reader {
  offset = 0;
  constructor(private readonly bytes: Uint8Array) {}

  byte(): number {
    if (this.offset >= this.bytes.length) throw new RangeError("unexpected end of module");
    return this.bytes[this.offset++]!;
  }

  /** Unsigned LEB128, up to 64 bits (memory64 limits), as a JS number (exact below 2^53). */
  uleb(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      const b = this.byte();
      result += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) return result;
      scale *= 128;
    }
    throw new RangeError("LEB128 number too long");
  }

  skip(n: number): void {
    if (this.offset + n > this.bytes.length) throw new RangeError("unexpected end of module");
    this.offset += n;
  }

  limits(): { min: number; max: number | undefined } {
    const flags = this.byte();
    const min = this.uleb();
    const max = flags & 0x01 ? this.uleb() : undefined;
    return { min, max };
  }
}

/** Memory declarations (imported and defined) read straight from the binary. */
export function readMemoryLimits(bytes: Uint8Array): MemoryLimits[] {
  const r = new Reader(bytes);
  const magic = [0x00, 0x61, 0x73, 0x6d];
  for (const m of magic) {
    if (r.byte() !== m) throw new TabbifyError("SPEC_INVALID", "not a WebAssembly module (bad magic)");
  }
  const version = r.byte() | (r.byte() << 8) | (r.byte() << 16) | (r.byte() << 24);
  if (version !== 1) {
    throw new TabbifyError(
      "SPEC_INVALID",
      "this is a WebAssembly component or an unknown binary version; the wasm runtime runs WASI preview1 core modules",
    );
  }
  const memories: MemoryLimits[] = [];
  while (r.offset < bytes.length) {
    const id = r.byte();
    const size = r.uleb();
    const end = r.offset + size;
    if (id === 2) {
      const count = r.uleb();
      for (let i = 0; i < count; i++) {
        r.skip(r.uleb());
        r.skip(r.uleb());
        const kind = r.byte();
        if (kind === 0) r.uleb();
        else if (kind === 1) {
          r.byte();
          r.limits();
        } else if (kind === 2) {
          const { min, max } = r.limits();
          memories.push({ minPages: min, maxPages: max, imported: true });
        } else if (kind === 3) r.skip(2);
        else r.skip(end - r.offset);
      }
    } else if (id === 5) {
      const count = r.uleb();
      for (let i = 0; i < count; i++) {
        const { min, max } = r.limits();
        memories.push({ minPages: min, maxPages: max, imported: false });
      }
    }
    r.offset = end;
  }
  return memories;
}

export interface ModuleCheck {
  module: WasmModule;
  memory: MemoryLimits;
}

/**
 * Compiles and checks a WAGI-style module: imports only `wasi_snapshot_preview1` functions,
 * exports `_start` and `memory`, one memory whose maximum fits in `memoryMb`.
 */
export async function checkWasiModule(bytes: Uint8Array, memoryMb: number): Promise<ModuleCheck> {
  let memories: MemoryLimits[];
  try {
    memories = readMemoryLimits(bytes);
  } catch (err) {
    if (err instanceof TabbifyError) throw err;
    throw new TabbifyError("SPEC_INVALID", `malformed WebAssembly module: ${(err as Error).message}`);
  }
  let module: WasmModule;
  try {
    module = await wasmApi.compile(bytes);
  } catch (err) {
    throw new TabbifyError("SPEC_INVALID", `WebAssembly module does not compile: ${(err as Error).message}`);
  }
  for (const imp of wasmApi.Module.imports(module)) {
    if (imp.module !== "wasi_snapshot_preview1" || imp.kind !== "function") {
      throw new TabbifyError(
        "SPEC_INVALID",
        `module imports ${imp.kind} ${imp.module}.${imp.name}; only wasi_snapshot_preview1 functions are provided`,
      );
    }
  }
  const exports = new Set(wasmApi.Module.exports(module).map((e) => `${e.kind}:${e.name}`));
  if (!exports.has("function:_start"))
    throw new TabbifyError("SPEC_INVALID", "module does not export _start");
  if (!exports.has("memory:memory"))
    throw new TabbifyError("SPEC_INVALID", "module does not export its memory");
  if (memories.length !== 1) {
    throw new TabbifyError(
      "SPEC_INVALID",
      `module has ${memories.length} memories; exactly one is supported`,
    );
  }
  const memory = memories[0]!;
  if (memory.maxPages === undefined) {
    throw new TabbifyError(
      "SPEC_INVALID",
      "module memory declares no maximum, so it could grow to 4 GiB; declare one (e.g. (memory 1 16) in WAT, -Wl,--max-memory in clang)",
    );
  }
  const limitPages = Math.floor((memoryMb * 1024 * 1024) / WASM_PAGE_BYTES);
  if (memory.maxPages > limitPages) {
    throw new TabbifyError(
      "SPEC_INVALID",
      `module memory maximum is ${memory.maxPages} pages (${(memory.maxPages * WASM_PAGE_BYTES) / 1048576} MiB), above the limit of ${memoryMb} MiB`,
    );
  }
  return { module, memory };
}
