/**
 * The slice of the WebAssembly JS API the wasm runtime uses. The project compiles against
 * ES2023 + Node typings, neither of which declares the global `WebAssembly`, so it is typed here
 * (a local view of the global, which cannot clash with a lib that declares it later).
 */
export interface WasmModule {
  readonly __wasmModule: unique symbol;
}
export interface WasmMemory {
  readonly buffer: ArrayBuffer;
}
export interface WasmInstance {
  readonly exports: Record<string, unknown>;
}
export interface WasmModuleDescriptor {
  module: string;
  name: string;
  kind: "function" | "table" | "memory" | "global" | "tag";
}

interface WebAssemblyApi {
  compile(bytes: Uint8Array): Promise<WasmModule>;
  Module: {
    new (bytes: Uint8Array): WasmModule;
    imports(m: WasmModule): WasmModuleDescriptor[];
    exports(m: WasmModule): Omit<WasmModuleDescriptor, "module">[];
  };
  Instance: new (m: WasmModule, imports: Record<string, Record<string, unknown>>) => WasmInstance;
}

export const wasmApi = (globalThis as unknown as { WebAssembly: WebAssemblyApi }).WebAssembly;
