/**
 * `npm run bench:registry`: our registry against Debian's `docker-registry` (when installed) and
 * `sha256sum` (the hashing limit), measured in one run on the same generated data. Prints a table
 * and ratios; asserts nothing about timings. The targets take turns measurement by measurement
 * over several rounds and the medians are reported, so a busy machine slows both alike.
 *
 * Flags: --blob-mib 256 --small-count 64 --small-mib 1 --chunk-mib 8 --head-n 1000 --rounds 5
 * --rss-gib 2 (0 skips the RSS run).
 */
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream, existsSync, readFileSync } from "node:fs";
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
  writeDockerRegistryConfig,
} from "../test/support/tools.js";

const { values } = parseArgs({
  options: {
    "blob-mib": { type: "string", default: "256" },
    "small-count": { type: "string", default: "64" },
    "small-mib": { type: "string", default: "1" },
    "chunk-mib": { type: "string", default: "8" },
    "head-n": { type: "string", default: "1000" },
    "rss-gib": { type: "string", default: "2" },
    rounds: { type: "string", default: "5" },
  },
});
const MiB = 1024 * 1024;
const blobMiB = Number(values["blob-mib"]);
const smallCount = Number(values["small-count"]);
const smallMiB = Number(values["small-mib"]);
const chunkMiB = Number(values["chunk-mib"]);
const headN = Number(values["head-n"]);
const rssGiB = Number(values["rss-gib"]);
const rounds = Math.max(1, Number(values.rounds));

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

type Metric = keyof Result;
const metrics: Metric[] = ["monolithic", "small", "chunked", "pull", "headP50", "headP99"];

interface Target {
  name: string;
  base: string;
  proc: RunningProcess;
}

const mb = (bytes: number, secs: number) => bytes / MiB / secs;

/**
 * One measurement of each kind, taking turns between the targets kind by kind (the order flips
 * every round), so load from elsewhere on the machine falls on both alike. Each round pushes
 * into fresh repositories; the blob bytes are the same, as a client re-pushing would send them.
 */
async function measureRound(targets: Target[], data: Data, round: number): Promise<Result[]> {
  const order = round % 2 === 0 ? targets.map((_, i) => i) : targets.map((_, i) => targets.length - 1 - i);
  const out: Partial<Result>[] = targets.map(() => ({}));
  const each = async (f: (t: Target, r: Partial<Result>) => Promise<void>) => {
    for (const i of order) await f(targets[i]!, out[i]!);
  };
  await each(async ({ base }, r) => {
    const [t] = await timed(() =>
      pushMonolithic(
        base,
        `bench/mono${round}`,
        () => createReadStream(data.file, { highWaterMark: MiB }),
        data.size,
        data.digest,
      ),
    );
    r.monolithic = mb(data.size, t);
  });
  await each(async ({ base }, r) => {
    const [t] = await timed(async () => {
      for (const [i, blob] of data.small.entries()) {
        await pushMonolithic(
          base,
          `bench/small${round}-${i % 4}`,
          () => blob,
          blob.length,
          data.smallDigests[i]!,
        );
      }
    });
    r.small = mb(data.smallBytes, t);
  });
  await each(async ({ base }, r) => {
    const [t] = await timed(() =>
      pushChunked(base, `bench/chunked${round}`, data.file, data.size, data.digest, chunkMiB * MiB),
    );
    r.chunked = mb(data.size, t);
  });
  await each(async ({ base }, r) => {
    const [t, pulled] = await timed(() => pull(base, `bench/mono${round}`, data.digest));
    if (pulled !== data.size) throw new Error(`pulled ${pulled} bytes of ${data.size}`);
    r.pull = mb(data.size, t);
  });
  await each(async ({ base }, r) => {
    const latencies: number[] = [];
    for (let i = 0; i < headN; i++) {
      const [t, reply] = await timed(() =>
        request(`${base}/v2/bench/mono${round}/blobs/${data.digest}`, "HEAD"),
      );
      expect(reply, 200, "HEAD blob");
      latencies.push(t * 1000);
    }
    latencies.sort((a, b) => a - b);
    r.headP50 = percentile(latencies, 50);
    r.headP99 = percentile(latencies, 99);
  });
  return out as Result[];
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function medianResult(rounds: Result[]): Result {
  const out = {} as Result;
  for (const m of metrics) out[m] = median(rounds.map((r) => r[m]));
  return out;
}

interface Data {
  file: string;
  size: number;
  digest: string;
  small: Buffer[];
  smallBytes: number;
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
    smallBytes: small.reduce((n, b) => n + b.length, 0),
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

/** Node's own SHA-256 (OpenSSL) over the same file: what both servers' hashing costs at best. */
async function nodeSha256Speed(data: Data): Promise<number> {
  const hash = createHash("sha256");
  const [secs] = await timed(async () => {
    for await (const chunk of createReadStream(data.file, { highWaterMark: MiB }))
      hash.update(chunk as Buffer);
  });
  if (`sha256:${hash.digest("hex")}` !== data.digest) throw new Error("node sha256 disagreed");
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
  const config = await writeDockerRegistryConfig(dir, join(dir, "docker-registry"), port);
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

function loadavg(): string {
  return readFileSync("/proc/loadavg", "utf8").trim();
}

async function main(): Promise<void> {
  const dir = await tempDir("tabbify-bench-registry");
  const targets: Target[] = [];
  const began = process.hrtime.bigint();
  try {
    console.log(`loadavg at start: ${loadavg()}`);
    console.log(
      `generating ${blobMiB} MiB blob + ${smallCount} x ${smallMiB} MiB blobs; chunks ${chunkMiB} MiB; ${headN} HEADs per round; ${rounds} rounds`,
    );
    const data = await generate(dir.path);
    for (const start of [startOurs, startDockerRegistry]) {
      const target = await start(dir.path);
      if (!target) {
        console.log(
          "docker-registry not installed (apt-get install -y docker-registry): measuring ours alone",
        );
        continue;
      }
      targets.push(target);
    }

    // Round 0 warms up both servers (JIT, page cache, connection pool) and is not counted.
    await measureRound(targets, data, 0);
    const perTarget: Result[][] = targets.map(() => []);
    const hashSpeeds: number[] = [];
    const nodeHashSpeeds: number[] = [];
    for (let round = 1; round <= rounds; round++) {
      hashSpeeds.push(sha256sumSpeed(data));
      nodeHashSpeeds.push(await nodeSha256Speed(data));
      const results = await measureRound(targets, data, round);
      for (const [i, r] of results.entries()) perTarget[i]!.push(r);
      console.log(
        `round ${round}: ${results
          .map(
            (r, i) =>
              `${targets[i]!.name} mono ${r.monolithic.toFixed(0)} small ${r.small.toFixed(0)} chunked ${r.chunked.toFixed(0)} pull ${r.pull.toFixed(0)} HEAD ${r.headP50.toFixed(2)}/${r.headP99.toFixed(2)} ms`,
          )
          .join(" | ")}`,
      );
    }
    const hashLimit = median(hashSpeeds);
    const nodeHashLimit = median(nodeHashSpeeds);
    const results = perTarget.map((rs) => medianResult(rs));

    console.log(`\nmedians of ${rounds} rounds:`);
    const cols = [
      "",
      "mono push MB/s",
      `${smallCount}x${smallMiB}MiB push MB/s`,
      `chunked (${chunkMiB} MiB) push MB/s`,
      "pull MB/s",
      "HEAD p50 ms",
      "HEAD p99 ms",
    ];
    const rows: string[][] = [cols];
    for (const [i, r] of results.entries()) {
      rows.push([
        targets[i]!.name,
        r.monolithic.toFixed(0),
        r.small.toFixed(0),
        r.chunked.toFixed(0),
        r.pull.toFixed(0),
        r.headP50.toFixed(3),
        r.headP99.toFixed(3),
      ]);
    }
    rows.push(["sha256sum (hash limit)", hashLimit.toFixed(0), "", "", "", "", ""]);
    rows.push(["node sha256, read+hash", nodeHashLimit.toFixed(0), "", "", "", "", ""]);
    const widths = cols.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    for (const row of rows) console.log(row.map((c, i) => c.padEnd(widths[i]!)).join("  "));

    const ours = results[0]!;
    const ratio = (a: number, b: number) => (a / b).toFixed(2);
    const theirs = results[1];
    if (theirs) {
      console.log(
        `ours/docker-registry (higher is better for ours): mono push ${ratio(ours.monolithic, theirs.monolithic)}, small push ${ratio(ours.small, theirs.small)}, chunked push ${ratio(ours.chunked, theirs.chunked)}, pull ${ratio(ours.pull, theirs.pull)}, HEAD p50 ${ratio(theirs.headP50, ours.headP50)}, HEAD p99 ${ratio(theirs.headP99, ours.headP99)}`,
      );
    }
    console.log(
      `ours/sha256sum: mono push ${ratio(ours.monolithic, hashLimit)}, chunked push ${ratio(ours.chunked, hashLimit)}, pull ${ratio(ours.pull, hashLimit)}`,
    );
    console.log(
      `ours/node sha256: mono push ${ratio(ours.monolithic, nodeHashLimit)}, chunked push ${ratio(ours.chunked, nodeHashLimit)}`,
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
    console.log(
      `loadavg at end: ${loadavg()}; bench took ${(Number(process.hrtime.bigint() - began) / 1e9).toFixed(0)} s`,
    );
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exit(1);
});
