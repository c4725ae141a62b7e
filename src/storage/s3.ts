import { randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat as statFile, unlink } from "node:fs/promises";
import { Readable } from "node:stream";
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { TabbifyError } from "../core/errors.js";
import type { ByteRange, ExclusiveCreateScope, FileInfo, StorageDriver } from "./driver.js";

export interface S3DriverOptions {
  bucket: string;
  region?: string;
  /** An S3-compatible server (MinIO, s3rver, ...); unset means AWS itself. */
  endpoint?: string;
  /** Key prefix every path lives under, e.g. `registry/`. */
  prefix?: string;
  /** Path-style URLs (`endpoint/bucket/key`), which most S3-compatible servers need. */
  forcePathStyle?: boolean;
  /** A preconfigured client; otherwise one is built with the default credential chain. */
  client?: S3Client;
}

/** Multipart part size for `ingest`: 16 MiB keeps a 2 GiB blob at 128 parts, well under 10,000. */
const PART_SIZE = 16 * 1024 * 1024;
/** Parts in flight at once per upload; with PART_SIZE this bounds upload buffering to ~64 MiB. */
const PART_CONCURRENCY = 4;

/**
 * Objects in one bucket under an optional prefix. Atomicity comes from S3 itself: a PutObject
 * or a completed multipart upload becomes visible whole or not at all.
 *
 * Credentials come from the SDK's default chain (env, shared config, SSO, container and instance
 * roles); this class never takes keys, so nothing here can leak them.
 *
 * `putContentIfAbsent` uses S3 conditional writes (`If-None-Match: *`). Servers that ignore the
 * header (s3rver, older S3-compatible stores) are detected by a probe on first use; against
 * them creation is exclusive only among callers of this driver instance (an in-process lock
 * around HEAD + PUT), which `exclusiveCreateScope()` reports as "instance".
 */
export class S3Driver implements StorageDriver {
  readonly name = "s3";
  readonly bucket: string;
  private readonly client: S3Client;
  private readonly prefix: string;
  private bucketChecked: Promise<void> | undefined;
  private conditionalWrites: Promise<boolean> | undefined;
  /** Per-key tail of the in-process create queue, used only when conditional writes are ignored. */
  private readonly createQueue = new Map<string, Promise<unknown>>();

  constructor(opts: S3DriverOptions) {
    this.bucket = opts.bucket;
    const prefix = (opts.prefix ?? "").replace(/^\/+/, "");
    this.prefix = prefix === "" || prefix.endsWith("/") ? prefix : `${prefix}/`;
    this.client =
      opts.client ??
      new S3Client({
        region: opts.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? "us-east-1",
        endpoint: opts.endpoint,
        forcePathStyle: opts.forcePathStyle ?? false,
        // Checksums only where S3 requires them: the default (aws-chunked bodies with CRC
        // trailers) is not understood by many S3-compatible servers, and the registry verifies
        // every blob's digest itself.
        requestChecksumCalculation: "WHEN_REQUIRED",
        responseChecksumValidation: "WHEN_REQUIRED",
      });
  }

  private key(path: string): string {
    if (
      path === "" ||
      path.startsWith("/") ||
      path.split("/").some((p) => p === "" || p === "." || p === "..")
    ) {
      throw new TabbifyError("PATH_INVALID", `invalid storage path: ${JSON.stringify(path)}`);
    }
    return this.prefix + path;
  }

  /** The key prefix under which a directory-like path's children live. */
  private dirPrefix(path: string): string {
    return path === "" ? this.prefix : `${this.key(path.replace(/\/+$/, ""))}/`;
  }

  /**
   * A missing bucket otherwise shows up as a bare 404 on HEAD, indistinguishable from a missing
   * key, so the bucket is checked once before the first operation.
   */
  private ready(): Promise<void> {
    this.bucketChecked ??= this.client.send(new HeadBucketCommand({ Bucket: this.bucket })).then(
      () => undefined,
      (err: unknown) => {
        this.bucketChecked = undefined;
        throw this.translate(err, "check bucket");
      },
    );
    return this.bucketChecked;
  }

  /** SDK errors become TabbifyErrors with codes an operator can act on. */
  private translate(err: unknown, action: string, path?: string): Error {
    if (err instanceof TabbifyError) return err;
    const where = `s3://${this.bucket}/${path === undefined ? this.prefix : this.prefix + path}`;
    const name = (err as { name?: string }).name ?? "";
    const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    if (name === "NoSuchBucket" || (action === "check bucket" && status === 404)) {
      return new TabbifyError("STORAGE_BUCKET_MISSING", `S3 bucket "${this.bucket}" does not exist`, {
        bucket: this.bucket,
      });
    }
    if (
      status === 403 ||
      status === 401 ||
      [
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "Forbidden",
      ].includes(name)
    ) {
      return new TabbifyError(
        "STORAGE_DENIED",
        `S3 denied ${action} on ${where} (${name || `HTTP ${status}`}): check the credentials and the bucket policy`,
        { bucket: this.bucket },
      );
    }
    if (name === "CredentialsProviderError") {
      return new TabbifyError(
        "STORAGE_DENIED",
        `no AWS credentials found for ${where}: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run with an instance role`,
        { bucket: this.bucket },
      );
    }
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ECONNREFUSED" || code === "ENOTFOUND" || code === "ECONNRESET" || code === "ETIMEDOUT") {
      return new TabbifyError("STORAGE_UNAVAILABLE", `S3 endpoint unreachable during ${action} (${code})`, {
        bucket: this.bucket,
      });
    }
    if (err instanceof S3ServiceException) {
      return new TabbifyError("STORAGE_FAILED", `S3 ${action} on ${where} failed: ${name} ${err.message}`, {
        bucket: this.bucket,
        status,
      });
    }
    return err instanceof Error ? err : new Error(String(err));
  }

  private static isNotFound(err: unknown): boolean {
    const name = (err as { name?: string }).name;
    const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    return name === "NoSuchKey" || name === "NotFound" || (status === 404 && name !== "NoSuchBucket");
  }

  async stat(path: string): Promise<FileInfo | null> {
    const Key = this.key(path);
    await this.ready();
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }));
      return { size: head.ContentLength ?? 0, modified: head.LastModified ?? new Date(0) };
    } catch (err) {
      if (S3Driver.isNotFound(err)) return null;
      throw this.translate(err, "stat", path);
    }
  }

  async read(path: string, range?: ByteRange): Promise<Readable> {
    const Key = this.key(path);
    if (range && (range.start < 0 || range.end < range.start)) {
      throw new TabbifyError("RANGE_INVALID", `invalid byte range ${range.start}-${range.end}`);
    }
    await this.ready();
    try {
      const out = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key,
          Range: range ? `bytes=${range.start}-${range.end}` : undefined,
        }),
      );
      if (!(out.Body instanceof Readable)) throw new Error("S3 GetObject returned no stream body");
      if (!range) return out.Body;
      return S3Driver.fitToRange(out.Body, range, out.ContentRange, out.ContentLength, path);
    } catch (err) {
      if (S3Driver.isNotFound(err)) throw new TabbifyError("PATH_NOT_FOUND", `no such file: ${path}`);
      if ((err as { name?: string }).name === "InvalidRange") {
        throw new TabbifyError(
          "RANGE_INVALID",
          `byte range ${range?.start}-${range?.end} is past the end of ${path}`,
        );
      }
      throw this.translate(err, "read", path);
    }
  }

  /**
   * HTTP lets a server ignore a Range or answer a wider one (s3rver widens `bytes=0-0` to the
   * whole object): trim the body to exactly the bytes asked for rather than trust it.
   */
  private static fitToRange(
    body: Readable,
    range: ByteRange,
    contentRange: string | undefined,
    contentLength: number | undefined,
    path: string,
  ): Readable {
    const m = contentRange?.match(/^bytes (\d+)-(\d+)\/(\d+|\*)$/);
    const servedStart = m ? Number(m[1]) : 0;
    const servedEnd = m ? Number(m[2]) : (contentLength ?? 0) - 1;
    const total = m && m[3] !== "*" ? Number(m[3]) : servedEnd + 1;
    const wantEnd = Math.min(range.end, total - 1);
    if (servedStart === range.start && servedEnd === wantEnd) return body;
    if (servedStart > range.start || servedEnd < wantEnd) {
      body.destroy();
      throw new TabbifyError(
        "STORAGE_FAILED",
        `S3 answered bytes ${servedStart}-${servedEnd} of ${path} for a request of ${range.start}-${range.end}`,
      );
    }
    let skip = range.start - servedStart;
    let take = wantEnd - range.start + 1;
    return Readable.from(
      (async function* () {
        try {
          for await (const chunk of body) {
            let buf = chunk as Buffer;
            if (skip > 0) {
              const dropped = Math.min(skip, buf.length);
              buf = buf.subarray(dropped);
              skip -= dropped;
            }
            if (buf.length === 0) continue;
            if (buf.length >= take) {
              yield buf.subarray(0, take);
              take = 0;
              return;
            }
            take -= buf.length;
            yield buf;
          }
        } finally {
          body.destroy();
        }
      })(),
      { objectMode: false },
    );
  }

  async getContent(path: string): Promise<Buffer | null> {
    const Key = this.key(path);
    await this.ready();
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key }));
      if (!out.Body) return Buffer.alloc(0);
      return Buffer.from(await out.Body.transformToByteArray());
    } catch (err) {
      if (S3Driver.isNotFound(err)) return null;
      throw this.translate(err, "read", path);
    }
  }

  async putContent(path: string, content: Buffer | string): Promise<void> {
    const Key = this.key(path);
    const Body = typeof content === "string" ? Buffer.from(content) : content;
    await this.ready();
    try {
      await this.client.send(
        new PutObjectCommand({ Bucket: this.bucket, Key, Body, ContentLength: Body.length }),
      );
    } catch (err) {
      throw this.translate(err, "write", path);
    }
  }

  async exclusiveCreateScope(): Promise<ExclusiveCreateScope> {
    return (await this.supportsConditionalWrites()) ? "store" : "instance";
  }

  /**
   * Writes a probe object twice with `If-None-Match: *`: a server that honours the header
   * refuses the second write with 412. The probe is deleted afterwards.
   */
  private supportsConditionalWrites(): Promise<boolean> {
    this.conditionalWrites ??= (async () => {
      await this.ready();
      const Key = `${this.prefix}_probe/conditional-write-${randomBytes(8).toString("hex")}`;
      const put = () =>
        this.client.send(
          new PutObjectCommand({ Bucket: this.bucket, Key, Body: Buffer.from("probe"), IfNoneMatch: "*" }),
        );
      try {
        await put();
        try {
          await put();
          return false;
        } catch (err) {
          if (S3Driver.isPreconditionFailed(err)) return true;
          throw err;
        }
      } catch (err) {
        throw this.translate(err, "probe conditional writes");
      } finally {
        await this.client
          .send(new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: [{ Key }] } }))
          .catch(() => {});
      }
    })().catch((err: unknown) => {
      this.conditionalWrites = undefined;
      throw err;
    });
    return this.conditionalWrites;
  }

  private static isPreconditionFailed(err: unknown): boolean {
    const name = (err as { name?: string }).name;
    const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    // 409 ConditionalRequestConflict: a concurrent conditional write to the same key won.
    return name === "PreconditionFailed" || status === 412 || name === "ConditionalRequestConflict";
  }

  async putContentIfAbsent(path: string, content: Buffer | string): Promise<boolean> {
    const Key = this.key(path);
    const Body = typeof content === "string" ? Buffer.from(content) : content;
    if (await this.supportsConditionalWrites()) {
      try {
        await this.client.send(
          new PutObjectCommand({
            Bucket: this.bucket,
            Key,
            Body,
            ContentLength: Body.length,
            IfNoneMatch: "*",
          }),
        );
        return true;
      } catch (err) {
        if (S3Driver.isPreconditionFailed(err)) return false;
        throw this.translate(err, "create", path);
      }
    }
    // The server ignores If-None-Match: serialize creators of this key within this process.
    const previous = this.createQueue.get(Key) ?? Promise.resolve();
    const attempt = previous.then(async () => {
      if ((await this.stat(path)) !== null) return false;
      await this.putContent(path, Body);
      return true;
    });
    const tail = attempt.catch(() => {});
    this.createQueue.set(Key, tail);
    try {
      return await attempt;
    } finally {
      if (this.createQueue.get(Key) === tail) this.createQueue.delete(Key);
    }
  }

  async ingest(path: string, localFile: string, size: number): Promise<void> {
    const Key = this.key(path);
    const actual = (await statFile(localFile)).size;
    if (actual !== size) {
      throw new TabbifyError(
        "SIZE_MISMATCH",
        `ingest of ${path}: file has ${actual} bytes, expected ${size}`,
      );
    }
    await this.ready();
    // A completed multipart upload (or, below one part, a single PutObject) is S3's atomic
    // publish: nothing is visible at Key until CompleteMultipartUpload returns, and Upload
    // aborts the multipart upload on failure so no parts linger.
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key, Body: createReadStream(localFile, { highWaterMark: 1024 * 1024 }) },
      partSize: PART_SIZE,
      queueSize: PART_CONCURRENCY,
      leavePartsOnError: false,
    });
    try {
      await upload.done();
    } catch (err) {
      throw this.translate(err, "upload", path);
    }
    await unlink(localFile);
  }

  async list(path: string): Promise<string[]> {
    const Prefix = this.dirPrefix(path);
    await this.ready();
    const names = new Set<string>();
    let ContinuationToken: string | undefined;
    try {
      do {
        const page = await this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix, Delimiter: "/", ContinuationToken }),
        );
        for (const p of page.CommonPrefixes ?? []) {
          if (p.Prefix) names.add(p.Prefix.slice(Prefix.length).replace(/\/$/, ""));
        }
        for (const o of page.Contents ?? []) {
          if (o.Key && o.Key !== Prefix) names.add(o.Key.slice(Prefix.length));
        }
        ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (ContinuationToken);
    } catch (err) {
      throw this.translate(err, "list", path);
    }
    // The driver's own probe objects live beside the data under the root; they are not data.
    if (path === "") names.delete("_probe");
    return [...names].filter((n) => n !== "").sort();
  }

  async delete(path: string): Promise<void> {
    const Key = this.key(path);
    const Prefix = `${Key}/`;
    await this.ready();
    try {
      let ContinuationToken: string | undefined;
      const batch: { Key: string }[] = [{ Key }];
      do {
        const page = await this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix, ContinuationToken }),
        );
        for (const o of page.Contents ?? []) if (o.Key) batch.push({ Key: o.Key });
        // DeleteObjects takes at most 1000 keys per request.
        while (batch.length >= 1000) await this.deleteKeys(batch.splice(0, 1000));
        ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (ContinuationToken);
      if (batch.length > 0) await this.deleteKeys(batch);
    } catch (err) {
      throw this.translate(err, "delete", path);
    }
  }

  private async deleteKeys(keys: { Key: string }[]): Promise<void> {
    const out = await this.client.send(
      new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: keys, Quiet: true } }),
    );
    const failed = (out.Errors ?? []).filter((e) => e.Code !== "NoSuchKey");
    if (failed.length > 0) {
      const first = failed[0]!;
      if (first.Code === "AccessDenied") {
        throw new TabbifyError("STORAGE_DENIED", `S3 denied deleting ${first.Key}`, { bucket: this.bucket });
      }
      throw new TabbifyError(
        "STORAGE_FAILED",
        `S3 could not delete ${failed.length} objects (${first.Code})`,
        {
          bucket: this.bucket,
        },
      );
    }
  }

  /** Closes the client's sockets; the driver is unusable afterwards. */
  close(): void {
    this.client.destroy();
  }
}
