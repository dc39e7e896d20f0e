/**
 * roci's library API: the same functions the CLI calls. Nothing here prints or exits.
 */

export { copyToArchive } from "./archive/copy-to-archive.ts";
export { DockerArchiveStore } from "./archive/docker-archive-store.ts";
export { OciArchiveStore } from "./archive/oci-archive-store.ts";
export { type CopyEvent, type CopyOptions, type CopyResult, copyImage } from "./copy/copy.ts";
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
export { type ApplyOptions, RootfsApplier } from "./layer/apply.ts";
export { type Compression, compressStream, decompressAuto, sniffCompression } from "./layer/compression.ts";
export type { LayerEntry } from "./layer/entry.ts";
export { exportImage } from "./layer/flatten.ts";
export { readLayer } from "./layer/read-layer.ts";
export { type UnpackOptions, type UnpackResult, unpackImage } from "./layer/unpack.ts";
export { type WalkOptions, walkDirectory } from "./layer/walk.ts";
export { type WriteLayerOptions, type WrittenLayer, writeLayer } from "./layer/write-layer.ts";
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
export { collectGarbage, type GcOptions, type GcReport, planGarbage } from "./store/gc.ts";
export { LayoutReader, type LayoutReaderOptions } from "./store/layout-reader.ts";
export { LayoutStore, type LayoutStoreOptions, type PushOutcome } from "./store/layout-store.ts";
export { flockAvailable, type LayoutLock, lockIndex } from "./store/lock.ts";
export { type EntryName, parseEntryName } from "./store/naming.ts";
export type {
  BlobEntry,
  Fetcher,
  ImageStore,
  ReadOnlyStorage,
  ReadOnlyTarget,
  Resolver,
  Selector,
  TagLister,
} from "./store/store.ts";
export { entriesForTag, lookupTag, tagsOf } from "./store/tag-lookup.ts";
export { readTar, type TarEntry, type TarHeader } from "./tar/reader.ts";
export { type TarHeaderInput, TarWriter } from "./tar/writer.ts";
