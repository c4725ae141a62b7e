import type { Digest } from "../core/digest.js";

/**
 * Where the registry keeps things in a StorageDriver, modelled on CNCF distribution's layout:
 *
 *   blobs/<alg>/<first 2 hex>/<hex>/data                              content, shared by all repositories
 *   repositories/<name>/_layers/<alg>/<hex>/link                      the repository may read this blob
 *   repositories/<name>/_manifests/revisions/<alg>/<hex>/link         a manifest in the repository
 *   repositories/<name>/_manifests/tags/<tag>/current/link            the digest a tag points at
 *   repositories/<name>/_referrers/<subject alg>/<subject hex>/<alg>/<hex>/link
 *                                                                      a descriptor (JSON) of a manifest whose
 *                                                                      `subject` is that digest
 *
 * Link files hold the digest as text (referrer links hold a descriptor). Repository name
 * components never start with `_`, so `_layers` & co. cannot collide with a nested repository.
 */
export const layout = {
  blobData: (d: Digest) => `blobs/${d.algorithm}/${d.hex.slice(0, 2)}/${d.hex}/data`,
  repositoriesRoot: "repositories",
  repository: (name: string) => `repositories/${name}`,
  layerLink: (name: string, d: Digest) => `repositories/${name}/_layers/${d.algorithm}/${d.hex}/link`,
  layersRoot: (name: string) => `repositories/${name}/_layers`,
  manifestsRoot: (name: string) => `repositories/${name}/_manifests`,
  revisionLink: (name: string, d: Digest) =>
    `repositories/${name}/_manifests/revisions/${d.algorithm}/${d.hex}/link`,
  tagsRoot: (name: string) => `repositories/${name}/_manifests/tags`,
  tag: (name: string, tag: string) => `repositories/${name}/_manifests/tags/${tag}`,
  tagLink: (name: string, tag: string) => `repositories/${name}/_manifests/tags/${tag}/current/link`,
  referrersOf: (name: string, subject: Digest) =>
    `repositories/${name}/_referrers/${subject.algorithm}/${subject.hex}`,
  referrerLink: (name: string, subject: Digest, referrer: Digest) =>
    `repositories/${name}/_referrers/${subject.algorithm}/${subject.hex}/${referrer.algorithm}/${referrer.hex}/link`,
};
