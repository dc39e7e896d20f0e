/*
 * roci_zstd: a streaming zstd encoder over the system libzstd, for writing zstd layers.
 *
 *   createEncoder(level: number): object            an encoder (freed with it)
 *   encode(encoder, input: Buffer, end: boolean): Buffer   the compressed bytes this input yields
 *
 * One frame per encoder, no checksum and no dictionary, so the same input, level and libzstd
 * version give the same bytes. Built only where libzstd's headers are installed (libzstd-dev).
 */
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include <node_api.h>

static void finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  ZSTD_freeCCtx((ZSTD_CCtx *)data);
}

static napi_value create_encoder(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  int32_t level;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_int32(env, argv[0], &level) != napi_ok) {
    napi_throw_type_error(env, NULL, "createEncoder(level): expected a number");
    return NULL;
  }
  ZSTD_CCtx *cctx = ZSTD_createCCtx();
  if (cctx == NULL || ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level)) ||
      ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 0))) {
    ZSTD_freeCCtx(cctx);
    napi_throw_error(env, "ZSTD", "cannot create a zstd encoder");
    return NULL;
  }
  if (napi_create_external(env, cctx, finalize, NULL, &result) != napi_ok) {
    ZSTD_freeCCtx(cctx);
    return NULL;
  }
  return result;
}

static napi_value encode(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], result;
  void *cctx_data, *input_data, *copy_data;
  size_t input_length;
  bool end;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 ||
      napi_get_value_external(env, argv[0], &cctx_data) != napi_ok ||
      napi_get_buffer_info(env, argv[1], &input_data, &input_length) != napi_ok ||
      napi_get_value_bool(env, argv[2], &end) != napi_ok) {
    napi_throw_type_error(env, NULL, "encode(encoder, buffer, end): bad arguments");
    return NULL;
  }
  ZSTD_CCtx *cctx = cctx_data;
  size_t capacity = ZSTD_compressBound(input_length) + ZSTD_CStreamOutSize();
  char *out = malloc(capacity);
  if (out == NULL) {
    napi_throw_error(env, "ENOMEM", "zstd: out of memory");
    return NULL;
  }
  ZSTD_inBuffer in = {input_data, input_length, 0};
  size_t produced = 0;
  for (;;) {
    if (capacity - produced < ZSTD_CStreamOutSize()) {
      capacity *= 2;
      char *grown = realloc(out, capacity);
      if (grown == NULL) {
        free(out);
        napi_throw_error(env, "ENOMEM", "zstd: out of memory");
        return NULL;
      }
      out = grown;
    }
    ZSTD_outBuffer buffer = {out + produced, capacity - produced, 0};
    size_t remaining = ZSTD_compressStream2(cctx, &buffer, &in, end ? ZSTD_e_end : ZSTD_e_continue);
    produced += buffer.pos;
    if (ZSTD_isError(remaining)) {
      free(out);
      napi_throw_error(env, "ZSTD", ZSTD_getErrorName(remaining));
      return NULL;
    }
    if (end ? remaining == 0 : in.pos == in.size) break;
  }
  napi_status status = napi_create_buffer(env, produced, &copy_data, &result);
  if (status == napi_ok && produced > 0) memcpy(copy_data, out, produced);
  free(out);
  return status == napi_ok ? result : NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "createEncoder", NAPI_AUTO_LENGTH, create_encoder, NULL, &fn) != napi_ok ||
      napi_set_named_property(env, exports, "createEncoder", fn) != napi_ok ||
      napi_create_function(env, "encode", NAPI_AUTO_LENGTH, encode, NULL, &fn) != napi_ok ||
      napi_set_named_property(env, exports, "encode", fn) != napi_ok) {
    return NULL;
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
