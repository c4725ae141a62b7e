# hello-docker: busybox httpd on HOST:PORT (the runtime sets both; the container shares the
# host's network). The page is written at start so it can carry VERSION. On SIGTERM it stops
# httpd and exits 0, so a swap's `docker stop` is graceful. Run by `/bin/busybox sh`: a
# FROM scratch image has no other shell.
/bin/busybox mkdir -p /tmp/www
echo "hello from hello-docker v${VERSION:-1}" > /tmp/www/index.html
echo '{"status":"ok"}' > /tmp/www/healthz
/bin/busybox httpd -f -p "${HOST:-127.0.0.1}:${PORT:-8080}" -h /tmp/www &
pid=$!
trap 'echo "hello-docker: SIGTERM received, closing"; kill $pid; wait $pid; exit 0' TERM
echo "hello-docker v${VERSION:-1} listening on ${HOST:-127.0.0.1}:${PORT:-8080}"
wait $pid
