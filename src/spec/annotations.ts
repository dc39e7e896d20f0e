import type { Descriptor } from "./documents.ts";

export const Annotation = {
  refName: "org.opencontainers.image.ref.name",
  containerdName: "io.containerd.image.name",
  dockerReferenceType: "vnd.docker.reference.type",
} as const;

/** The names an `index.json` entry carries: its ref.name and its containerd image name. */
export function namesOf(descriptor: Descriptor): string[] {
  const names: string[] = [];
  const refName = descriptor.annotations?.[Annotation.refName];
  const containerdName = descriptor.annotations?.[Annotation.containerdName];
  if (refName) names.push(refName);
  if (containerdName && containerdName !== refName) names.push(containerdName);
  return names;
}
