/**
 * `npm run bench:registry`: our registry against Debian's `docker-registry` (when installed) and
 * `sha256sum` (the hashing limit), measured in one run on the same generated data. Prints a table
 * and ratios; asserts nothing about timings.
 *
 * Flags: --blob-mib 256 --small-count 64 --small-mib 1 --chunk-mib 8 --head-n 1000 --rss-gib 2
 * (0 skips the RSS run).
 */
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream, existsSync, readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import http from "node:http";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { parseArgs } from "node:util";
import {
  freePort,
  type RunningProcess,
  spawnProcess,
  spawnTabbify,
  tempDir,
  waitForHttp,
} from "../test/support/tools.js";

const { values } = parseArgs({
  options: {
    "blob-mib": { type: "string", default: "256" },
    "small-count": { type: "string", default: "64" },
    "small-mib": { type: "string", default: "1" },
    "chunk-mib": { type: "string", default: "8" },
    "head-n": { type: "string", default: "1000" },
    "rss-gib": { type: "string", default: "2" },
  },
});
const MiB = 1024 * 1024;
const blobMiB = Number(values["blob-mib"]);
const smallCount = Number(values["small-count"]);
const smallMiB = Number(values["small-mib"]);
const chunkMiB = Number(values["chunk-mib"]);
const headN = Number(values["head-n"]);
const rssGiB = Number(values["rss-gib"]);

const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** One request; the body may be a stream. Reads the reply whole (replies here are small). */
function request(
  url: string,
  method: string,
  body?: Buffer | Readable,
  headers: Record<string, string> = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
      );
      res.on("error", reject);
    });
    req.on("error", reject);
    if (body instanceof Readable) pipeline(body, req).catch(reject);
    else req.end(body);
  });
}

function expect(reply: Reply, status: number, what: string): Reply {
  if (reply.status !== status) {
    throw new Error(
      `${what}: HTTP ${reply.status} (wanted ${status}): ${reply.body.toString().slice(0, 300)}`,
    );
  }
  return reply;
}

function resolveLocation(base: string, reply: Reply): string {
  const loc = reply.headers.location;
  if (!loc) throw new Error("upload reply without Location");
  return new URL(loc, base).toString();
}

function withQuery(url: string, key: string, value: string): string {
  const u = new URL(url);
  u.searchParams.set(key, value);
  return u.toString();
}

async function startUpload(base: string, repo: string): Promise<string> {
  return resolveLocation(
    base,
    expect(await request(`${base}/v2/${repo}/blobs/uploads/`, "POST"), 202, "POST upload"),
  );
}

async function pushMonolithic(
  base: string,
  repo: string,
  body: () => Buffer | Readable,
  size: number,
  digest: string,
) {
  const location = await startUpload(base, repo);
  expect(
    await request(withQuery(location, "digest", digest), "PUT", body(), {
      "content-type": "application/octet-stream",
      "content-length": String(size),
    }),
    201,
    "PUT monolithic",
  );
}

async function pushChunked(
  base: string,
  repo: string,
  file: string,
  size: number,
  digest: string,
  chunk: number,
) {
  let location = await startUpload(base, repo);
  for (let start = 0; start < size; start += chunk) {
    const end = Math.min(size, start + chunk) - 1;
    const reply = await request(
      location,
      "PATCH",
      createReadStream(file, { start, end, highWaterMark: MiB }),
      {
        "content-type": "application/octet-stream",
        "content-length": String(end - start + 1),
        "content-range": `${start}-${end}`,
      },
    );
    location = resolveLocation(base, expect(reply, 202, "PATCH chunk"));
  }
  expect(await request(withQuery(location, "digest", digest), "PUT"), 201, "PUT close chunked");
}

async function pull(base: string, repo: string, digest: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .get(`${base}/v2/${repo}/blobs/${digest}`, { agent }, (res) => {
        if (res.statusCode !== 200) return reject(new Error(`pull: HTTP ${res.statusCode}`));
        let n = 0;
        res.on("data", (c: Buffer) => {
          n += c.length;
        });
        res.on("end", () => resolve(n));
        res.on("error", reject);
      })
      .on("error", reject);
  });
}

async function timed<T>(f: () => Promise<T>): Promise<[number, T]> {
  const t0 = process.hrtime.bigint();
  const out = await f();
  return [Number(process.hrtime.bigint() - t0) / 1e9, out];
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

interface Result {
  monolithic: number;
  small: number;
  chunked: number;
  pull: number;
  headP50: number;
  headP99: number;
}

interface Target {
  name: string;
  base: string;
  proc: RunningProcess;
}

async function measure(target: Target, data: Data): Promise<Result> {
  const { base } = target;
  const mb = (bytes: number, secs: number) => bytes / MiB / secs;
  const [tMono] = await timed(() =>
    pushMonolithic(
      base,
      "bench/mono",
      () => createReadStream(data.file, { highWaterMark: MiB }),
      data.size,
      data.digest,
    ),
  );
  const [tSmall] = await timed(async () => {
    for (const [i, blob] of data.small.entries()) {
      await pushMonolithic(base, `bench/small${i % 4}`, () => blob, blob.length, data.smallDigests[i]!);
    }
  });
  const [tChunk] = await timed(() =>
    pushChunked(base, "bench/chunked", data.file, data.size, data.digest, chunkMiB * MiB),
  );
  const [tPull, pulled] = await timed(() => pull(base, "bench/mono", data.digest));
  if (pulled !== data.size) throw new Error(`pulled ${pulled} bytes of ${data.size}`);
  const latencies: number[] = [];
  for (let i = 0; i < headN; i++) {
    const [t, reply] = await timed(() => request(`${base}/v2/bench/mono/blobs/${data.digest}`, "HEAD"));
    expect(reply, 200, "HEAD blob");
    latencies.push(t * 1000);
  }
  latencies.sort((a, b) => a - b);
  const smallBytes = data.small.reduce((n, b) => n + b.length, 0);
  return {
    monolithic: mb(data.size, tMono),
    small: mb(smallBytes, tSmall),
    chunked: mb(data.size, tChunk),
    pull: mb(data.size, tPull),
    headP50: percentile(latencies, 50),
    headP99: percentile(latencies, 99),
  };
}

interface Data {
  file: string;
  size: number;
  digest: string;
  small: Buffer[];
  smallDigests: string[];
}

/** Deterministic-enough data that does not compress or repeat: random MiBs, each stamped. */
async function generate(dir: string): Promise<Data> {
  const file = join(dir, "blob.bin");
  const hash = createHash("sha256");
  const base = randomBytes(MiB);
  const out = createWriteStream(file);
  for (let i = 0; i < blobMiB; i++) {
    const chunk = Buffer.from(base);
    chunk.writeUInt32BE(i, 0);
    hash.update(chunk);
    if (!out.write(chunk)) await new Promise<void>((r) => out.once("drain", () => r()));
  }
  out.end();
  await new Promise<void>((r, j) => out.on("finish", () => r()).on("error", j));
  const small = Array.from({ length: smallCount }, () => randomBytes(smallMiB * MiB));
  return {
    file,
    size: blobMiB * MiB,
    digest: `sha256:${hash.digest("hex")}`,
    small,
    smallDigests: small.map((b) => `sha256:${createHash("sha256").update(b).digest("hex")}`),
  };
}

function sha256sumSpeed(data: Data): number {
  // Read once first so both this and the registries run from the page cache.
  spawnSync("cat", [data.file], { stdio: ["ignore", "ignore", "ignore"] });
  const t0 = process.hrtime.bigint();
  const r = spawnSync("sha256sum", [data.file], { encoding: "utf8" });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0 || `sha256:${r.stdout.split(" ")[0]}` !== data.digest)
    throw new Error("sha256sum disagreed");
  return data.size / MiB / secs;
}

async function startOurs(dir: string): Promise<Target> {
  const proc = spawnTabbify(["registry", "--listen", "127.0.0.1:0", "--data", join(dir, "ours")], {
    REGISTRY_AUTH_URL: "",
    REGISTRY_STORAGE: "local",
  });
  const [, base] = await proc.waitForLine(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
  return { name: "tabbify registry", base: base!, proc };
}

async function startDockerRegistry(dir: string): Promise<Target | null> {
  if (!existsSync("/usr/bin/docker-registry")) return null;
  const port = await freePort();
  const config = join(dir, "docker-registry.yml");
  await writeFile(
    config,
    [
      "version: 0.1",
      "log:",
      "  level: error",
      "  accesslog:",
      "    disabled: true",
      "storage:",
      "  filesystem:",
      `    rootdirectory: ${join(dir, "docker-registry")}`,
      "  delete:",
      "    enabled: true",
      "http:",
      `  addr: 127.0.0.1:${port}`,
      "",
    ].join("\n"),
  );
  const proc = spawnProcess("/usr/bin/docker-registry", ["serve", config]);
  const base = `http://127.0.0.1:${port}`;
  await waitForHttp(`${base}/v2/`, 15_000);
  return { name: "docker-registry", base, proc };
}

function vmField(pid: number, field: string): number {
  const m = readFileSync(`/proc/${pid}/status`, "utf8").match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"));
  return m ? Number(m[1]) * 1024 : Number.NaN;
}

/** Streams rssGiB of generated bytes in one PATCH (no Content-Range) while sampling RSS. */
async function rssDuringPush(
  target: Target,
): Promise<{ before: number; peak: number; hwm: number; secs: number }> {
  const pid = target.proc.child.pid!;
  const before = vmField(pid, "VmRSS");
  let peak = before;
  const sampler = setInterval(() => {
    peak = Math.max(peak, vmField(pid, "VmRSS"));
  }, 20);
  const total = rssGiB * 1024 * MiB;
  const hash = createHash("sha256");
  const block = randomBytes(MiB);
  let sent = 0;
  const source = new Readable({
    read() {
      if (sent >= total) return this.push(null);
      const chunk = Buffer.from(block);
      chunk.writeUInt32BE(sent / MiB, 0);
      hash.update(chunk);
      sent += chunk.length;
      this.push(chunk);
    },
  });
  const [secs] = await timed(async () => {
    const location = await startUpload(target.base, "bench/huge");
    const reply = await request(location, "PATCH", source, {
      "content-type": "application/octet-stream",
      "content-length": String(total),
    });
    const next = resolveLocation(target.base, expect(reply, 202, "PATCH stream"));
    expect(
      await request(withQuery(next, "digest", `sha256:${hash.digest("hex")}`), "PUT"),
      201,
      "PUT close stream",
    );
  });
  clearInterval(sampler);
  peak = Math.max(peak, vmField(pid, "VmRSS"));
  return { before, peak, hwm: vmField(pid, "VmHWM"), secs };
}

async function main(): Promise<void> {
  const dir = await tempDir("tabbify-bench-registry");
  const targets: Target[] = [];
  try {
    console.log(
      `generating ${blobMiB} MiB blob + ${smallCount} x ${smallMiB} MiB blobs; chunks ${chunkMiB} MiB; ${headN} HEADs`,
    );
    const data = await generate(dir.path);
    const hashLimit = sha256sumSpeed(data);
    const results: [string, Result][] = [];
    for (const start of [startOurs, startDockerRegistry]) {
      const target = await start(dir.path);
      if (!target) {
        console.log(
          "docker-registry not installed (apt-get install -y docker-registry): measuring ours alone",
        );
        continue;
      }
      targets.push(target);
      results.push([target.name, await measure(target, data)]);
    }

    const cols = [
      "",
      "mono push MB/s",
      `${smallCount}x${smallMiB}MiB push MB/s`,
      "chunked push MB/s",
      "pull MB/s",
      "HEAD p50 ms",
      "HEAD p99 ms",
    ];
    const rows: string[][] = [cols];
    for (const [name, r] of results) {
      rows.push([
        name,
        r.monolithic.toFixed(0),
        r.small.toFixed(0),
        r.chunked.toFixed(0),
        r.pull.toFixed(0),
        r.headP50.toFixed(3),
        r.headP99.toFixed(3),
      ]);
    }
    rows.push(["sha256sum (hash limit)", hashLimit.toFixed(0), "", "", "", "", ""]);
    const widths = cols.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    for (const row of rows) console.log(row.map((c, i) => c.padEnd(widths[i]!)).join("  "));

    const ours = results[0]![1];
    const ratio = (a: number, b: number) => (a / b).toFixed(2);
    const theirs = results[1]?.[1];
    if (theirs) {
      console.log(
        `ours/docker-registry: mono push ${ratio(ours.monolithic, theirs.monolithic)}, small push ${ratio(ours.small, theirs.small)}, chunked push ${ratio(ours.chunked, theirs.chunked)}, pull ${ratio(ours.pull, theirs.pull)}, HEAD p50 ${ratio(theirs.headP50, ours.headP50)} (higher is better for ours)`,
      );
    }
    console.log(
      `ours/sha256sum: mono push ${ratio(ours.monolithic, hashLimit)}, chunked push ${ratio(ours.chunked, hashLimit)}, pull ${ratio(ours.pull, hashLimit)}`,
    );

    if (rssGiB > 0) {
      for (const target of targets) {
        const r = await rssDuringPush(target);
        console.log(
          `${target.name}: ${rssGiB} GiB streamed push in ${r.secs.toFixed(1)} s (${((rssGiB * 1024) / r.secs).toFixed(0)} MB/s); RSS before ${(r.before / MiB).toFixed(0)} MB, peak sampled ${(r.peak / MiB).toFixed(0)} MB (+${((r.peak - r.before) / MiB).toFixed(0)} MB), VmHWM ${(r.hwm / MiB).toFixed(0)} MB`,
        );
      }
    }
  } finally {
    for (const t of targets) await t.proc.stop();
    agent.destroy();
    await dir.remove();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exit(1);
});
