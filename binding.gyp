{
  "targets": [
    {
      "target_name": "roci_flock",
      "sources": [
        "native/flock.c"
      ],
      "defines": [
        "NAPI_VERSION=8"
      ],
      "cflags": [
        "-Wall",
        "-Wextra"
      ]
    },
    {
      "target_name": "roci_fs",
      "sources": [
        "native/fs.c"
      ],
      "defines": [
        "NAPI_VERSION=8"
      ],
      "cflags": [
        "-Wall",
        "-Wextra"
      ]
    }
  ]
}
