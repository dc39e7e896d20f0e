/*
 * roci_flock: flock(2) for Node, nothing else.
 *
 *   flock(fd: number, operation: number): number   0 on success, otherwise the errno
 *   LOCK_SH, LOCK_EX, LOCK_NB, LOCK_UN               the operation bits
 *
 * It never throws for a failed flock (EWOULDBLOCK, EINTR, EBADF, ENOLCK, ...): the caller decides.
 * It throws a TypeError only when called with something other than two int32 numbers.
 * Callers must pass LOCK_NB: without it flock(2) blocks the calling (main) thread.
 */
#include <errno.h>
#include <sys/file.h>

#include <node_api.h>

static napi_value flock_js(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd;
  int32_t operation;
  napi_value result;

  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_int32(env, argv[1], &operation) != napi_ok) {
    napi_throw_type_error(env, NULL, "flock(fd, operation): expected two integers");
    return NULL;
  }

  int rc = flock(fd, operation);
  int32_t status = rc == 0 ? 0 : errno;
  if (napi_create_int32(env, status, &result) != napi_ok) return NULL;
  return result;
}

static int set_int(napi_env env, napi_value exports, const char *name, int32_t value) {
  napi_value v;
  return napi_create_int32(env, value, &v) == napi_ok &&
         napi_set_named_property(env, exports, name, v) == napi_ok;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "flock", NAPI_AUTO_LENGTH, flock_js, NULL, &fn) != napi_ok ||
      napi_set_named_property(env, exports, "flock", fn) != napi_ok ||
      !set_int(env, exports, "LOCK_SH", LOCK_SH) || !set_int(env, exports, "LOCK_EX", LOCK_EX) ||
      !set_int(env, exports, "LOCK_NB", LOCK_NB) || !set_int(env, exports, "LOCK_UN", LOCK_UN)) {
    return NULL;
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
