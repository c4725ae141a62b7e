/**
 * Runs s3rver 3.7 with three of its storage defects fixed, so tests exercise our S3 driver
 * against S3's documented behaviour rather than s3rver's accidents:
 *
 * - PutObject and CompleteMultipartUpload wrote straight into the object file and answered
 *   before the data was flushed: readers saw growing, partial objects. Here the object is
 *   written to a staging file and renamed into place once complete, as S3 publishes atomically.
 * - ListObjectsV2 with a delimiter never reported a common prefix whose keys all sit two or more
 *   levels deeper (`a/f/g/h` listed under `a/` gave no `f/`), walked directories unsorted, and
 *   crashed building a continuation token for a page ending in a common prefix. Here listing is
 *   re-implemented: all keys under the prefix, sorted, folded at the delimiter; pages end on an
 *   object so s3rver's token (the last key) stays valid.
 *
 * Continuation tokens are DES-encrypted by s3rver, so this script needs node's
 * `--openssl-legacy-provider` (s3rver.ts passes it).
 *
 * Left as s3rver has it, on purpose: `If-None-Match: *` on PutObject is ignored (the S3 driver's
 * fallback for such servers is what the suite then checks), and a Range ending at byte 0 returns
 * more than asked (the driver trims over-long range replies, which HTTP allows servers to send).
 *
 * Usage: node s3rver-server.js --directory DIR [--bucket NAME]... ; prints
 * `S3rver listening on ADDRESS:PORT` on 127.0.0.1 with a kernel-chosen port.
 */
import { createHash, randomBytes } from "node:crypto";
import { createWriteStream, readdirSync, statSync } from "node:fs";
import { mkdir, rename, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { type Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { parseArgs } from "node:util";

const require = createRequire(import.meta.url);

interface StoredObject {
  bucket: string;
  key: string;
  content: Buffer | Readable;
  metadata: Record<string, unknown>;
}
interface FilesystemStore {
  rootDirectory: string;
  getBucketPath(bucket: string): string;
  getResourcePath(bucket: string, key: string, resource: string): string;
  putMetadata(bucket: string, key: string, metadata: Record<string, unknown>, md5: string): Promise<void>;
  getMetadata(bucket: string, key: string): Promise<Record<string, unknown>>;
}
type S3ObjectClass = new (
  bucket: string,
  key: string,
  content: null,
  metadata: Record<string, unknown>,
) => unknown;

const S3rver = require("s3rver") as new (
  opts: Record<string, unknown>,
) => { run(): Promise<{ address: string; port: number }> };
const FilesystemStoreClass = require("s3rver/lib/stores/filesystem.js") as {
  prototype: FilesystemStore & Record<string, unknown>;
};
const S3Object = require("s3rver/lib/models/object.js") as S3ObjectClass;

const OBJECT_SUFFIX = "._S3rver_object";

FilesystemStoreClass.prototype.putObject = async function putObject(
  this: FilesystemStore,
  object: StoredObject,
): Promise<{ size: number; md5: string }> {
  const objectPath = this.getResourcePath(object.bucket, object.key, "object");
  // Staging beside the store root (not inside it, where every directory is a bucket).
  const staging = `${this.rootDirectory.replace(/\/+$/, "")}.staging`;
  await mkdir(staging, { recursive: true });
  const tmp = join(staging, randomBytes(12).toString("hex"));
  const md5 = createHash("md5");
  let size = 0;
  try {
    const counter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        md5.update(chunk);
        size += chunk.length;
        done(null, chunk);
      },
    });
    const source = Buffer.isBuffer(object.content)
      ? (async function* () {
          yield object.content as Buffer;
        })()
      : object.content;
    await pipeline(source, counter, createWriteStream(tmp));
    const digest = md5.digest("hex");
    await mkdir(dirname(objectPath), { recursive: true });
    // Metadata first: the object exists for s3rver once its data file does, so the data file is
    // renamed in last, complete.
    await this.putMetadata(object.bucket, object.key, object.metadata, digest);
    await rename(tmp, objectPath);
    return { size, md5: digest };
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
};

FilesystemStoreClass.prototype.listObjects = async function listObjects(
  this: FilesystemStore,
  bucket: string,
  options: { delimiter?: string; startAfter?: string; prefix?: string; maxKeys?: number },
) {
  const delimiter = options.delimiter ?? "";
  const startAfter = options.startAfter ?? "";
  const prefix = options.prefix ?? "";
  const maxKeys = options.maxKeys ?? Number.POSITIVE_INFINITY;
  const bucketPath = this.getBucketPath(bucket);
  const keys: string[] = [];
  const walk = (dir: string, keyDir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) {
        const sub = `${keyDir}${name}/`;
        // Only directories that can hold keys under the prefix.
        if (sub.startsWith(prefix) || prefix.startsWith(sub)) walk(path, sub);
      } else if (name.endsWith(OBJECT_SUFFIX)) {
        const key = keyDir + name.slice(0, -OBJECT_SUFFIX.length);
        if (key.startsWith(prefix) && key > startAfter) keys.push(key);
      }
    }
  };
  walk(bucketPath, "");
  keys.sort();
  const objectKeys: string[] = [];
  const commonPrefixes: string[] = [];
  let isTruncated = false;
  for (const key of keys) {
    const cut = delimiter ? key.indexOf(delimiter, prefix.length) : -1;
    if (objectKeys.length >= maxKeys) {
      isTruncated = true;
      break;
    }
    if (cut !== -1) {
      const common = key.slice(0, cut + delimiter.length);
      if (common > startAfter && commonPrefixes.at(-1) !== common) commonPrefixes.push(common);
    } else {
      objectKeys.push(key);
    }
  }
  const objects = await Promise.all(
    objectKeys.map(async (key) => {
      try {
        return new S3Object(bucket, key, null, await this.getMetadata(bucket, key));
      } catch (err) {
        // Deleted between the walk and now.
        if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
        throw err;
      }
    }),
  );
  return { objects: objects.filter((o) => o !== undefined), commonPrefixes, isTruncated };
};

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      directory: { type: "string" },
      bucket: { type: "string", multiple: true },
      address: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "0" },
    },
  });
  if (!values.directory) throw new Error("--directory is required");
  await mkdir(values.directory, { recursive: true });
  const server = new S3rver({
    address: values.address,
    port: Number(values.port),
    directory: values.directory,
    silent: true,
    // Clients use path-style URLs; a bracketed IPv6 host (`[fd7e::1]`) is no IP to s3rver's
    // check and would be taken for a bucket name.
    vhostBuckets: false,
    configureBuckets: (values.bucket ?? []).map((name) => ({ name, configs: [] })),
  });
  const { address, port } = await server.run();
  console.log(`S3rver listening on ${address}:${port}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
