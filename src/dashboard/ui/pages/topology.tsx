import { type TopologyView, topology } from "../../../node/views-client.js";
import { node } from "../api";
import { usePoll } from "../components/use-poll";
import { useSession } from "../session";
import "./pages-b.css";

/** A runner as the topology route answers it; orphans also name the parent they lost. */
type Runner = TopologyView["supervisors"][number]["runners"][number] & { parent?: string | null };
/** A supervisor, live or lost (only the lost carry down_since). */
type Host = Omit<TopologyView["supervisors"][number], "runners"> & { down_since?: string; runners: Runner[] };

const HOST_W = 260;
const HEAD_H = 74;
const RUNNER_H = 34;
const GAP = 20;
const COLUMNS = 3;

/**
 * The node's roster as a picture (node key): each supervisor a box with its health, tags and
 * runners inside; lost supervisors dashed red with theirs; orphaned runners in a row of their own.
 */
export function TopologyPage() {
  const tenant = useSession().session?.tenant;
  // The roster spans every tenant: the node answers a tenant's token 401, which would end the
  // session, so a tenant is told instead of asking.
  const { data, error: failed } = usePoll(tenant ? null : "topology", () => topology(node), 5000);
  const error = tenant ? "The topology spans every tenant: log in with the node key to see it." : failed;
  return (
    <section class="topology">
      <h1>Topology</h1>
      {error ? (
        <p role="alert" class="error">
          {error}
        </p>
      ) : null}
      {data ? <TopologyPicture topology={data} /> : tenant ? null : <p class="muted">Loading…</p>}
    </section>
  );
}

function hostHeight(h: Host): number {
  return HEAD_H + Math.max(1, h.runners.length) * (RUNNER_H + 6) + 8;
}

function TopologyPicture({ topology }: { topology: TopologyView }) {
  const hosts = [
    ...topology.supervisors.map((h) => ({ host: h, up: true })),
    ...topology.down.map((h) => ({ host: h, up: false })),
  ];
  const rows: (typeof hosts)[] = [];
  for (let i = 0; i < hosts.length; i += COLUMNS) rows.push(hosts.slice(i, i + COLUMNS));
  let y = 40;
  const placed: { host: Host; up: boolean; x: number; y: number }[] = [];
  for (const row of rows) {
    for (const [i, h] of row.entries()) placed.push({ ...h, x: GAP + i * (HOST_W + GAP), y });
    y += Math.max(...row.map((h) => hostHeight(h.host))) + GAP;
  }
  const orphanY = y + 24;
  const height = orphanY + (topology.orphaned.length ? RUNNER_H + GAP : 0) + 10;
  const width = Math.max(560, GAP + Math.min(COLUMNS, hosts.length) * (HOST_W + GAP));
  const summary = `${topology.supervisors.length} supervisors up, ${topology.down.length} down, ${topology.orphaned.length} orphaned runners`;
  return (
    <svg
      viewBox={`0 0 ${width} ${height}`}
      width={width}
      height={height}
      role="img"
      aria-labelledby="topology-title"
    >
      <title id="topology-title">{summary}</title>
      <text x={GAP} y={24}>
        node: {summary}
      </text>
      {placed.map((p) => (
        <HostBox key={p.host.display_name} {...p} />
      ))}
      {topology.orphaned.length ? (
        <g>
          <text x={GAP} y={orphanY - 6}>
            orphaned runners (no live supervisor)
          </text>
          {topology.orphaned.map((r, i) => (
            <RunnerBox
              key={r.app_uuid}
              runner={r}
              x={GAP + i * (HOST_W / 1.2 + 8)}
              y={orphanY}
              w={HOST_W / 1.2}
              orphan
            />
          ))}
        </g>
      ) : null}
    </svg>
  );
}

function HostBox({ host, up, x, y }: { host: Host; up: boolean; x: number; y: number }) {
  const h = hostHeight(host);
  return (
    <g class={`host ${up ? "up" : "down"}`} data-host={host.display_name}>
      <rect class="frame" x={x} y={y} width={HOST_W} height={h} rx={8} stroke-width={2} />
      <text x={x + 10} y={y + 20}>
        {host.display_name}
      </text>
      <text x={x + HOST_W - 10} y={y + 20} text-anchor="end" class={up ? "health-up" : "health-down"}>
        {up ? "● up" : "● down"}
      </text>
      <text x={x + 10} y={y + 38} class="small">
        {host.address} · v{host.version}
      </text>
      <text x={x + 10} y={y + 56} class="small">
        {host.tags.length ? host.tags.join(" · ") : "no tags"}
        {host.down_since ? ` · down since ${new Date(host.down_since).toLocaleTimeString()}` : ""}
      </text>
      {host.runners.length === 0 ? (
        <text x={x + 10} y={y + HEAD_H + 18} class="small">
          no runners
        </text>
      ) : (
        host.runners.map((r, i) => (
          <RunnerBox
            key={r.app_uuid}
            runner={r}
            x={x + 10}
            y={y + HEAD_H + i * (RUNNER_H + 6)}
            w={HOST_W - 20}
          />
        ))
      )}
    </g>
  );
}

function RunnerBox({
  runner,
  x,
  y,
  w,
  orphan,
}: {
  runner: Runner;
  x: number;
  y: number;
  w: number;
  orphan?: boolean;
}) {
  return (
    <g class={`runner${orphan ? " orphan" : ""}`} data-runner={runner.app_uuid}>
      <rect x={x} y={y} width={w} height={RUNNER_H} rx={5} />
      <text x={x + 8} y={y + 15}>
        {runner.name ?? "(unregistered app)"}
      </text>
      <text x={x + 8} y={y + 28} class="small">
        {runner.app_uuid.slice(0, 8)}… · {runner.address}
      </text>
    </g>
  );
}
