{
  "targets": [
    {
      "target_name": "roci_flock",
      "sources": ["native/flock.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-Wall", "-Wextra"]
    },
    {
      "target_name": "roci_fs",
      "sources": ["native/fs.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-Wall", "-Wextra"]
    }
  ],
  "conditions": [
    [
      "'<!(pkg-config --exists libzstd 2>/dev/null && echo yes || echo no)'=='yes'",
      {
        "targets": [
          {
            "target_name": "roci_zstd",
            "sources": ["native/zstd.c"],
            "defines": ["NAPI_VERSION=8"],
            "cflags": ["-Wall", "-Wextra"],
            "libraries": ["-lzstd"]
          }
        ]
      }
    ]
  ]
}
