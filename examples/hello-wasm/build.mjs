// Assembles hello.wat into hello.wasm with the wabt npm package (a dev dependency):
// `node examples/hello-wasm/build.mjs`. The built hello.wasm is committed, so running the
// example needs no build.
import { readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import wabtInit from "wabt";

const here = dirname(fileURLToPath(import.meta.url));
const wabt = await wabtInit();
const source = await readFile(join(here, "hello.wat"), "utf8");
const parsed = wabt.parseWat("hello.wat", source);
parsed.resolveNames();
parsed.validate();
const { buffer } = parsed.toBinary({ write_debug_names: false });
parsed.destroy();
await writeFile(join(here, "hello.wasm"), buffer);
console.log(`wrote ${join(here, "hello.wasm")} (${buffer.length} bytes)`);
