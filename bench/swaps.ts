/**
 * `npm run bench:swaps`: zero-downtime swaps under load, per data plane (`BENCH_PLANES`, default
 * node,nginx,haproxy,caddy) and runner hop (`BENCH_HOPS`, default userspace,kernel); see
 * swap-cells.ts. `npm run bench:runtime` runs the same cells in its swap section.
 */
import { spawnSync } from "node:child_process";
import { cpus, loadavg } from "node:os";
import { measureSwaps, type SwapRow, swapTable } from "./swap-cells.js";

const planes = (process.env.BENCH_PLANES ?? "node,nginx,haproxy,caddy").split(",").map((p) => p.trim());
const hops = (process.env.BENCH_HOPS ?? "userspace,kernel").split(",").map((h) => h.trim());
const swaps = Number(process.env.BENCH_SWAPS ?? 10);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 64);

async function main(): Promise<void> {
  if (spawnSync("sh", ["-c", "command -v wrk"]).status !== 0) {
    process.stderr.write("bench:swaps needs wrk: apt-get install -y wrk\n");
    process.exit(1);
  }
  console.log(
    `# bench:swaps: wrk -t1 -c${connections}; ${swaps} swaps per cell; at rest ${process.env.BENCH_SWAP_REST_SECS ?? 5} s; ${cpus().length} cores, load ${loadavg()
      .map((l) => l.toFixed(1))
      .join(" ")}`,
  );
  const rows: SwapRow[] = [];
  for (const plane of planes) {
    for (const hop of hops) {
      try {
        rows.push(await measureSwaps(plane, hop));
      } catch (err) {
        console.log(`# ${plane}/${hop} not measured: ${(err as Error).message.split("\n")[0]}`);
      }
    }
  }
  console.log(`\n${swapTable(rows)}`);
  console.log(
    `\n# load after: ${loadavg()
      .map((l) => l.toFixed(1))
      .join(" ")}`,
  );
  process.exit(0);
}

await main();
