import type { Readable } from "node:stream";
import { type Digest, formatDigest, parseDigest } from "../core/digest.js";
import { TabbifyError } from "../core/errors.js";
import type { ByteRange, StorageDriver } from "../storage/driver.js";
import { layout } from "./layout.js";
import { checkName, requestDigest } from "./names.js";
import type { AppendOptions, UploadStore } from "./uploads.js";

/**
 * Blobs of the repository service: content stored once under `blobs/` and linked into each
 * repository that pushed or mounted it; a repository reads only what it links.
 */
export class RepositoryBlobs {
  constructor(
    private readonly driver: StorageDriver,
    private readonly uploads: UploadStore,
  ) {}

  /** A repository may read a blob it links as a layer or holds as a manifest revision. */
  async linked(name: string, d: Digest): Promise<boolean> {
    if (await this.driver.stat(layout.layerLink(name, d))) return true;
    return (await this.driver.stat(layout.revisionLink(name, d))) !== null;
  }

  async statBlob(name: string, digest: string): Promise<{ digest: string; size: number }> {
    checkName(name);
    const d = requestDigest(digest);
    const info = (await this.linked(name, d)) ? await this.driver.stat(layout.blobData(d)) : null;
    if (!info) {
      throw new TabbifyError("BLOB_UNKNOWN", `blob ${formatDigest(d)} is not in ${name}`, {
        digest: formatDigest(d),
      });
    }
    return { digest: formatDigest(d), size: info.size };
  }

  /**
   * Opens a blob the repository can read. `pickRange` sees the size and returns the byte range
   * to send (or undefined for all of it); it may throw RANGE_INVALID.
   */
  async openBlob(
    name: string,
    digest: string,
    pickRange: (size: number) => ByteRange | undefined = () => undefined,
  ): Promise<{ digest: string; size: number; range?: ByteRange; stream: Readable }> {
    const blob = await this.statBlob(name, digest);
    const range = pickRange(blob.size);
    const stream = await this.driver.read(layout.blobData(parseDigest(blob.digest)), range);
    return range ? { ...blob, range, stream } : { ...blob, stream };
  }

  async deleteBlob(name: string, digest: string): Promise<void> {
    checkName(name);
    const d = requestDigest(digest);
    if (!(await this.driver.stat(layout.layerLink(name, d)))) {
      throw new TabbifyError("BLOB_UNKNOWN", `blob ${formatDigest(d)} is not in ${name}`, {
        digest: formatDigest(d),
      });
    }
    // Only the link goes: the content may be shared with other repositories (GC is separate).
    await this.driver.delete(layout.layerLink(name, d).replace(/\/link$/, ""));
  }

  /** Links a blob that `from` can read into `name`. False when `from` cannot read it. */
  async mountBlob(name: string, digest: string, from: string): Promise<{ digest: string } | null> {
    checkName(name);
    checkName(from);
    const d = requestDigest(digest);
    if (!(await this.linked(from, d)) || !(await this.driver.stat(layout.blobData(d)))) return null;
    await this.driver.putContent(layout.layerLink(name, d), formatDigest(d));
    return { digest: formatDigest(d) };
  }

  /**
   * Completes an upload: appends the final chunk if there is one, verifies the digest, publishes
   * the blob (once, shared by all repositories) and links it into the repository.
   */
  async finishUpload(
    name: string,
    id: string,
    digest: string,
    finalChunk?: { body: Readable; opts: AppendOptions },
  ): Promise<{ digest: string; size: number }> {
    checkName(name);
    const d = requestDigest(digest);
    if (finalChunk) await this.uploads.append(name, id, finalChunk.body, finalChunk.opts);
    const { file, size } = await this.uploads.finish(name, id, d);
    await this.commitBlob(name, d, file, size);
    await this.uploads.remove(id);
    return { digest: formatDigest(d), size };
  }

  /** Single-request push (POST ?digest=): staged, verified and committed like any upload. */
  async pushBlob(name: string, digest: string, body: Readable, length?: number): Promise<{ digest: string }> {
    checkName(name);
    const d = requestDigest(digest);
    const upload = await this.uploads.create(name, d.algorithm);
    try {
      await this.uploads.append(name, upload.id, body, length === undefined ? {} : { length });
      const { file, size } = await this.uploads.finish(name, upload.id, d);
      await this.commitBlob(name, d, file, size);
      return { digest: formatDigest(d) };
    } finally {
      await this.uploads.remove(upload.id);
    }
  }

  private async commitBlob(name: string, d: Digest, file: string, size: number): Promise<void> {
    const existing = await this.driver.stat(layout.blobData(d));
    // Same digest, same bytes: an existing blob is kept and the staged copy dropped by the caller.
    if (!existing || existing.size !== size) await this.driver.ingest(layout.blobData(d), file, size);
    await this.driver.putContent(layout.layerLink(name, d), formatDigest(d));
  }
}
