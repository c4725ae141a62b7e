;; hello-wasm: a WAGI-style (CGI over WASI preview1) module. The host passes the request as
;; environment variables (REQUEST_METHOD, PATH_INFO, ...) and reads a CGI response from stdout:
;; header lines, a blank line, the body. It answers with its version (env VERSION, default 1),
;; the request method and the path.
(module
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))

  ;; One page to start, two at most: the runtime refuses modules without a declared maximum.
  (memory (export "memory") 1 2)

  ;; 0: iovec {ptr, len}; 8: bytes written; 16: env count; 20: env buffer size.
  ;; 64..: constant strings. 1024..: env pointer array, then the env strings.
  (data (i32.const 64) "Content-Type: text/plain\n\n")                     ;; 26 bytes
  (data (i32.const 96) "hello from hello-wasm v")                           ;; 23
  (data (i32.const 128) "\nmethod: ")                                       ;; 9
  (data (i32.const 144) "\npath: ")                                         ;; 7
  (data (i32.const 160) "VERSION=")                                         ;; 8
  (data (i32.const 176) "REQUEST_METHOD=")                                  ;; 15
  (data (i32.const 192) "PATH_INFO=")                                       ;; 10
  (data (i32.const 208) "Status: 500 Internal Server Error\nContent-Type: text/plain\n\nenvironment too large\n") ;; 82
  (data (i32.const 300) "1")                                                ;; the default version

  (global $env_array i32 (i32.const 1024))

  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))

  (func $strlen (param $ptr i32) (result i32)
    (local $end i32)
    (local.set $end (local.get $ptr))
    (block $done
      (loop $next
        (br_if $done (i32.eqz (i32.load8_u (local.get $end))))
        (local.set $end (i32.add (local.get $end) (i32.const 1)))
        (br $next)))
    (i32.sub (local.get $end) (local.get $ptr)))

  (func $write_cstr (param $ptr i32)
    (call $write (local.get $ptr) (call $strlen (local.get $ptr))))

  ;; 1 when the n bytes at $a equal the n bytes at $b.
  (func $starts_with (param $a i32) (param $b i32) (param $n i32) (result i32)
    (local $i i32)
    (block $differ
      (loop $next
        (if (i32.ge_u (local.get $i) (local.get $n)) (then (return (i32.const 1))))
        (br_if $differ
          (i32.ne (i32.load8_u (i32.add (local.get $a) (local.get $i)))
                  (i32.load8_u (i32.add (local.get $b) (local.get $i)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 0))

  ;; The value of the variable whose "NAME=" prefix is at $name, or 0 when it is not set.
  (func $getenv (param $name i32) (param $name_len i32) (result i32)
    (local $i i32)
    (local $entry i32)
    (block $missing
      (loop $next
        (br_if $missing (i32.ge_u (local.get $i) (i32.load (i32.const 16))))
        (local.set $entry (i32.load (i32.add (global.get $env_array) (i32.shl (local.get $i) (i32.const 2)))))
        (if (call $starts_with (local.get $entry) (local.get $name) (local.get $name_len))
          (then (return (i32.add (local.get $entry) (local.get $name_len)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 0))

  (func (export "_start")
    (local $strings i32)
    (local $value i32)
    (drop (memory.grow (i32.const 1)))
    (drop (call $environ_sizes_get (i32.const 16) (i32.const 20)))
    (local.set $strings
      (i32.add (global.get $env_array) (i32.shl (i32.load (i32.const 16)) (i32.const 2))))
    (if (i32.gt_u (i32.add (local.get $strings) (i32.load (i32.const 20))) (i32.const 131072))
      (then
        (call $write (i32.const 208) (i32.const 82))
        (return)))
    (drop (call $environ_get (global.get $env_array) (local.get $strings)))

    (call $write (i32.const 64) (i32.const 26))
    (call $write (i32.const 96) (i32.const 23))
    (local.set $value (call $getenv (i32.const 160) (i32.const 8)))
    (if (local.get $value)
      (then (call $write_cstr (local.get $value)))
      (else (call $write (i32.const 300) (i32.const 1))))
    (call $write (i32.const 128) (i32.const 9))
    (local.set $value (call $getenv (i32.const 176) (i32.const 15)))
    (if (local.get $value) (then (call $write_cstr (local.get $value))))
    (call $write (i32.const 144) (i32.const 7))
    (local.set $value (call $getenv (i32.const 192) (i32.const 10)))
    (if (local.get $value) (then (call $write_cstr (local.get $value))))
    (call $write (i32.const 144) (i32.const 1))))
