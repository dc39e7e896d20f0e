/**
 * roci's library API: the same functions the CLI calls. Nothing here prints or exits.
 */
export {
  type Digest,
  isDigest,
  type ParsedDigest,
  parseDigest,
  requireVerifiable,
  shortDigest,
} from "./digest/digest.ts";
export { digestOf, hashFile, VerifyingStream, verifyBytes } from "./digest/hash.ts";
export { ExitCode, isRociError, RociError, type RociErrorCode } from "./errors.ts";
export { fetchConfig, fetchIndex, fetchManifest } from "./image/documents.ts";
export { type InspectResult, inspectImage } from "./image/inspect.ts";
export { type ListEntry, listLayout } from "./image/list.ts";
export { isAttestationEntry, type SelectedImage, type SelectOptions, selectImage } from "./image/select.ts";
export { type VerifyProblem, type VerifyReport, verifyLayout } from "./image/verify.ts";
export {
  type DockerReference,
  formatDockerReference,
  parseDockerReference,
} from "./reference/docker-reference.ts";
export {
  formatReference,
  type ImageReference,
  parseLayoutPath,
  parseReference,
} from "./reference/reference.ts";
export { Annotation, namesOf } from "./spec/annotations.ts";
export {
  type Descriptor,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
  type Parsed,
  type Platform,
  parseConfig,
  parseIndex,
  parseManifest,
} from "./spec/documents.ts";
export { MediaType } from "./spec/media-types.ts";
export {
  formatPlatform,
  hostPlatform,
  normalizePlatform,
  parsePlatform,
  platformMatcher,
  selectPlatform,
} from "./spec/platform.ts";
export { fetchBytes } from "./store/fetch-bytes.ts";
export { LayoutReader, type LayoutReaderOptions } from "./store/layout-reader.ts";
export type {
  Fetcher,
  ReadOnlyStorage,
  ReadOnlyTarget,
  Resolver,
  Selector,
  TagLister,
} from "./store/store.ts";
export { entriesForTag, lookupTag, tagsOf } from "./store/tag-lookup.ts";
