/** Fetching and parsing the JSON documents of an image graph from any store, verified. */
import {
  type Descriptor,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
  type Parsed,
  parseConfig,
  parseIndex,
  parseManifest,
} from "../spec/documents.ts";
import { fetchBytes } from "../store/fetch-bytes.ts";
import type { Fetcher } from "../store/store.ts";

export async function fetchIndex(fetcher: Fetcher, descriptor: Descriptor): Promise<Parsed<ImageIndex>> {
  return parseIndex(await fetchBytes(fetcher, descriptor), `index ${descriptor.digest}`);
}

export async function fetchManifest(
  fetcher: Fetcher,
  descriptor: Descriptor,
): Promise<Parsed<ImageManifest>> {
  return parseManifest(await fetchBytes(fetcher, descriptor), `manifest ${descriptor.digest}`);
}

export async function fetchConfig(fetcher: Fetcher, descriptor: Descriptor): Promise<Parsed<ImageConfig>> {
  return parseConfig(await fetchBytes(fetcher, descriptor), `config ${descriptor.digest}`);
}
