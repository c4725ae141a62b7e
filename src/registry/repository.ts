import type { Readable } from "node:stream";
import type { ByteRange, StorageDriver } from "../storage/driver.js";
import { ImmutableTags } from "./immutable-tags.js";
import type { Descriptor } from "./manifests.js";
import { checkName } from "./names.js";
import { RepositoryBlobs } from "./repository-blobs.js";
import { type CatalogScope, type Page, RepositoryListings } from "./repository-listings.js";
import { type ManifestContent, RepositoryManifests } from "./repository-manifests.js";
import { type AppendOptions, type UploadState, UploadStore } from "./uploads.js";

export { type CatalogScope, maxReferrersPage, type Page } from "./repository-listings.js";
export type { ManifestContent } from "./repository-manifests.js";

export interface RegistryServiceOptions {
  driver: StorageDriver;
  /** Local directory for upload sessions; for the local driver, inside its tmpDir (same device). */
  stagingDir: string;
  /** Upload sessions untouched this long are deleted. Default 24 h. */
  staleUploadMs?: number;
  /** Open upload sessions one tenant (a name's first component) may hold. Default 100. */
  maxUploadsPerTenant?: number;
  /** `repo:tag` globs whose tags, once pushed, keep their digest (TAG_IMMUTABLE otherwise). */
  immutableTags?: readonly string[];
}

export const defaultMaxUploadsPerTenant = 100;

/**
 * The repository service: OCI semantics over a StorageDriver. It validates names, digests and
 * manifests, keeps the distribution-style layout (layout.ts) and knows nothing of HTTP.
 * Authorization is the caller's job: the service trusts the repository names it is given.
 * Blobs, manifests and listings each live in their own file (repository-*.ts); this is their one
 * face, with the upload sessions.
 */
export class RegistryService {
  readonly driver: StorageDriver;
  readonly uploads: UploadStore;
  private readonly blobs: RepositoryBlobs;
  private readonly manifests: RepositoryManifests;
  private readonly listings: RepositoryListings;

  constructor(opts: RegistryServiceOptions) {
    this.driver = opts.driver;
    this.uploads = new UploadStore(
      opts.stagingDir,
      opts.staleUploadMs ?? 24 * 3600 * 1000,
      opts.maxUploadsPerTenant ?? defaultMaxUploadsPerTenant,
    );
    this.blobs = new RepositoryBlobs(this.driver, this.uploads);
    this.manifests = new RepositoryManifests(
      this.driver,
      this.blobs,
      new ImmutableTags(opts.immutableTags ?? []),
    );
    this.listings = new RepositoryListings(this.driver);
  }

  // ---- blobs ----------------------------------------------------------------------------------

  statBlob(name: string, digest: string): Promise<{ digest: string; size: number }> {
    return this.blobs.statBlob(name, digest);
  }

  /**
   * Opens a blob the repository can read. `pickRange` sees the size and returns the byte range
   * to send (or undefined for all of it); it may throw RANGE_INVALID.
   */
  openBlob(
    name: string,
    digest: string,
    pickRange?: (size: number) => ByteRange | undefined,
  ): Promise<{ digest: string; size: number; range?: ByteRange; stream: Readable }> {
    return this.blobs.openBlob(name, digest, pickRange);
  }

  deleteBlob(name: string, digest: string): Promise<void> {
    return this.blobs.deleteBlob(name, digest);
  }

  /** Links a blob that `from` can read into `name`. False when `from` cannot read it. */
  mountBlob(name: string, digest: string, from: string): Promise<{ digest: string } | null> {
    return this.blobs.mountBlob(name, digest, from);
  }

  async startUpload(name: string): Promise<UploadState> {
    return this.uploads.create(checkName(name));
  }

  async uploadStatus(name: string, id: string): Promise<UploadState> {
    return this.uploads.status(checkName(name), id);
  }

  async appendUpload(name: string, id: string, body: Readable, opts: AppendOptions): Promise<UploadState> {
    return this.uploads.append(checkName(name), id, body, opts);
  }

  async cancelUpload(name: string, id: string): Promise<void> {
    await this.uploads.cancel(checkName(name), id);
  }

  /** Completes an upload (its final chunk, if any), verified, published and linked. */
  finishUpload(
    name: string,
    id: string,
    digest: string,
    finalChunk?: { body: Readable; opts: AppendOptions },
  ): Promise<{ digest: string; size: number }> {
    return this.blobs.finishUpload(name, id, digest, finalChunk);
  }

  /** Single-request push (POST ?digest=): staged, verified and committed like any upload. */
  pushBlob(name: string, digest: string, body: Readable, length?: number): Promise<{ digest: string }> {
    return this.blobs.pushBlob(name, digest, body, length);
  }

  // ---- manifests ------------------------------------------------------------------------------

  /** By tag or digest; an index is resolved for clients that cannot read lists. */
  getManifest(name: string, reference: string, accept?: string | string[]): Promise<ManifestContent> {
    return this.manifests.getManifest(name, reference, accept);
  }

  /** Stores a manifest under a tag or its digest, once everything it references is checked. */
  putManifest(
    name: string,
    reference: string,
    body: Buffer,
    contentType: string | undefined,
  ): Promise<{ digest: string; subject?: string }> {
    return this.manifests.putManifest(name, reference, body, contentType);
  }

  /** Deletes a tag, or a manifest with its tags and referrer entry; returns the digest it named. */
  deleteManifest(name: string, reference: string): Promise<{ digest: string; tag?: string }> {
    return this.manifests.deleteManifest(name, reference);
  }

  // ---- discovery ------------------------------------------------------------------------------

  repositoryExists(name: string): Promise<boolean> {
    return this.listings.repositoryExists(name);
  }

  listTags(name: string, n?: number, last?: string): Promise<Page<string>> {
    return this.listings.listTags(name, n, last);
  }

  /** Every repository, sorted; with `scope`, only a tenant's (and what its token may pull). */
  listRepositories(n?: number, last?: string, scope?: CatalogScope): Promise<Page<string>> {
    return this.listings.listRepositories(n, last, scope);
  }

  /** Manifests in `name` whose subject is `digest`, as a paged OCI image index. */
  referrers(
    name: string,
    digest: string,
    opts: { artifactType?: string; n?: number; last?: string } = {},
  ): Promise<{ index: { mediaType: string; schemaVersion: 2; manifests: Descriptor[] }; next?: string }> {
    return this.listings.referrers(name, digest, opts);
  }

  async cleanupStaleUploads(): Promise<number> {
    return this.uploads.cleanupStale();
  }
}
