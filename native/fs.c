/*
 * roci_fs: the filesystem calls Node lacks, for applying image layers as root.
 *
 *   lsetxattr(path: string, name: string, value: Buffer): void
 *   lgetxattr(path: string, name: string): Buffer
 *   llistxattr(path: string): string[]
 *   mknod(path: string, mode: number, major: number, minor: number): void
 *
 * None follows a symlink in the last component (the l* calls, and mknod creates). Failures throw
 * an Error whose `code` is the errno name ("ENOTSUP", "EPERM", ...), as Node's fs errors do.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include <node_api.h>

#define MAX_PATH 4096
#define MAX_NAME 256

static napi_value fail(napi_env env, const char *call, const char *path) {
  int code = errno;
  char message[MAX_PATH + 128];
  const char *name = strerrorname_np(code);
  snprintf(message, sizeof message, "%s, %s '%s'", name ? name : "EIO", call, path);
  napi_throw_error(env, name ? name : "EIO", message);
  return NULL;
}

static int get_string(napi_env env, napi_value value, char *out, size_t size) {
  size_t length;
  if (napi_get_value_string_utf8(env, value, out, size, &length) != napi_ok || length >= size - 1) {
    napi_throw_type_error(env, NULL, "expected a string of reasonable length");
    return 0;
  }
  return 1;
}

static napi_value lsetxattr_js(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  char path[MAX_PATH], name[MAX_NAME];
  void *data;
  size_t length;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3) return NULL;
  if (!get_string(env, argv[0], path, sizeof path) || !get_string(env, argv[1], name, sizeof name)) return NULL;
  if (napi_get_buffer_info(env, argv[2], &data, &length) != napi_ok) {
    napi_throw_type_error(env, NULL, "lsetxattr: value must be a Buffer");
    return NULL;
  }
  if (lsetxattr(path, name, data, length, 0) != 0) return fail(env, "lsetxattr", path);
  return NULL;
}

static napi_value lgetxattr_js(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  char path[MAX_PATH], name[MAX_NAME];
  void *data;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) return NULL;
  if (!get_string(env, argv[0], path, sizeof path) || !get_string(env, argv[1], name, sizeof name)) return NULL;
  ssize_t size = lgetxattr(path, name, NULL, 0);
  if (size < 0) return fail(env, "lgetxattr", path);
  if (napi_create_buffer(env, (size_t)size, &data, &result) != napi_ok) return NULL;
  if (size > 0 && lgetxattr(path, name, data, (size_t)size) != size) return fail(env, "lgetxattr", path);
  return result;
}

static napi_value llistxattr_js(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result, item;
  char path[MAX_PATH];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) return NULL;
  if (!get_string(env, argv[0], path, sizeof path)) return NULL;
  ssize_t size = llistxattr(path, NULL, 0);
  if (size < 0) return fail(env, "llistxattr", path);
  char *names = malloc((size_t)size + 1);
  if (names == NULL) return fail(env, "llistxattr", path);
  size = size > 0 ? llistxattr(path, names, (size_t)size) : 0;
  if (size < 0) {
    free(names);
    return fail(env, "llistxattr", path);
  }
  napi_create_array(env, &result);
  uint32_t index = 0;
  for (ssize_t at = 0; at < size; at += (ssize_t)strlen(names + at) + 1) {
    napi_create_string_utf8(env, names + at, NAPI_AUTO_LENGTH, &item);
    napi_set_element(env, result, index++, item);
  }
  free(names);
  return result;
}

static napi_value mknod_js(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  char path[MAX_PATH];
  uint32_t mode, major_number, minor_number;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 4) return NULL;
  if (!get_string(env, argv[0], path, sizeof path) || napi_get_value_uint32(env, argv[1], &mode) != napi_ok ||
      napi_get_value_uint32(env, argv[2], &major_number) != napi_ok ||
      napi_get_value_uint32(env, argv[3], &minor_number) != napi_ok) {
    napi_throw_type_error(env, NULL, "mknod(path, mode, major, minor): bad arguments");
    return NULL;
  }
  if (mknod(path, (mode_t)mode, makedev(major_number, minor_number)) != 0) return fail(env, "mknod", path);
  return NULL;
}

static int export_function(napi_env env, napi_value exports, const char *name, napi_callback fn) {
  napi_value value;
  return napi_create_function(env, name, NAPI_AUTO_LENGTH, fn, NULL, &value) == napi_ok &&
         napi_set_named_property(env, exports, name, value) == napi_ok;
}

static napi_value init(napi_env env, napi_value exports) {
  if (!export_function(env, exports, "lsetxattr", lsetxattr_js) ||
      !export_function(env, exports, "lgetxattr", lgetxattr_js) ||
      !export_function(env, exports, "llistxattr", llistxattr_js) ||
      !export_function(env, exports, "mknod", mknod_js)) {
    return NULL;
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
