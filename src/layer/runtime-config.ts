/**
 * The OCI runtime `config.json` of an unpacked bundle, from the image config, in the spirit of
 * umoci's: the process (entrypoint + cmd, env, working directory, user), the usual mounts and
 * namespaces, and the image's labels and metadata as annotations.
 */
import { lstatSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { RociError } from "../errors.ts";
import type { ImageConfig } from "../spec/documents.ts";

export function runtimeConfig(image: ImageConfig, rootfs: string): Record<string, unknown> {
  const settings = image.config ?? {};
  const user = resolveUser(settings.User ?? "", rootfs);
  const annotations: Record<string, string> = { ...(settings.Labels ?? {}) };
  annotations["org.opencontainers.image.architecture"] = image.architecture;
  annotations["org.opencontainers.image.os"] = image.os;
  if (image.author) annotations["org.opencontainers.image.author"] = image.author;
  if (image.created) annotations["org.opencontainers.image.created"] = image.created;
  if (settings.StopSignal) annotations["org.opencontainers.image.stopSignal"] = settings.StopSignal;
  const ports = Object.keys(settings.ExposedPorts ?? {});
  if (ports.length > 0) annotations["org.opencontainers.image.exposedPorts"] = ports.sort().join(",");
  return {
    ociVersion: "1.0.2",
    process: {
      terminal: false,
      user,
      args: [...(settings.Entrypoint ?? []), ...(settings.Cmd ?? [])],
      env: settings.Env ?? ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
      cwd: settings.WorkingDir || "/",
      capabilities: Object.fromEntries(
        ["bounding", "effective", "permitted"].map((set) => [
          set,
          ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
        ]),
      ),
      rlimits: [{ type: "RLIMIT_NOFILE", hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: "rootfs", readonly: false },
    hostname: "roci",
    mounts: [
      { destination: "/proc", type: "proc", source: "proc" },
      {
        destination: "/dev",
        type: "tmpfs",
        source: "tmpfs",
        options: ["nosuid", "strictatime", "mode=755", "size=65536k"],
      },
      {
        destination: "/dev/pts",
        type: "devpts",
        source: "devpts",
        options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
      },
      {
        destination: "/dev/shm",
        type: "tmpfs",
        source: "shm",
        options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
      },
      {
        destination: "/dev/mqueue",
        type: "mqueue",
        source: "mqueue",
        options: ["nosuid", "noexec", "nodev"],
      },
      { destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"] },
    ],
    annotations,
    linux: {
      namespaces: ["pid", "network", "ipc", "uts", "mount"].map((type) => ({ type })),
      maskedPaths: [
        "/proc/kcore",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/sys/firmware",
      ],
      readonlyPaths: [
        "/proc/asound",
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
      ],
    },
  };
}

/** `user`, `uid`, `user:group`, `uid:gid` → numbers, names looked up in the image's own files. */
function resolveUser(spec: string, rootfs: string): { uid: number; gid: number } {
  if (spec === "") return { uid: 0, gid: 0 };
  const [userPart = "", groupPart] = spec.split(":", 2);
  const passwd = readImageFile(rootfs, "etc/passwd");
  let uid: number;
  let gid = 0;
  if (/^\d+$/.test(userPart)) {
    uid = Number(userPart);
    const row = passwd.find((fields) => fields[2] === userPart);
    if (row) gid = Number(row[3]);
  } else {
    const row = passwd.find((fields) => fields[0] === userPart);
    if (!row)
      throw new RociError(
        "INVALID_DOCUMENT",
        `image config: user "${userPart}" is not in the image's /etc/passwd`,
      );
    uid = Number(row[2]);
    gid = Number(row[3]);
  }
  if (groupPart !== undefined) {
    if (/^\d+$/.test(groupPart)) gid = Number(groupPart);
    else {
      const row = readImageFile(rootfs, "etc/group").find((fields) => fields[0] === groupPart);
      if (!row)
        throw new RociError(
          "INVALID_DOCUMENT",
          `image config: group "${groupPart}" is not in the image's /etc/group`,
        );
      gid = Number(row[2]);
    }
  }
  return { uid, gid };
}

/** A colon-separated file of the image, read only if no component is a symlink (it could point at the host's). */
function readImageFile(rootfs: string, relative: string): string[][] {
  let path = rootfs;
  for (const part of relative.split("/")) {
    path = join(path, part);
    try {
      if (lstatSync(path).isSymbolicLink()) return [];
    } catch {
      return [];
    }
  }
  return readFileSync(path, "utf8")
    .split("\n")
    .filter((line) => line && !line.startsWith("#"))
    .map((line) => line.split(":"));
}
