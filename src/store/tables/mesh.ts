/** Sticky mesh addresses: one row per WireGuard public key that ever joined. */
export interface MeshPeersTable {
  wg_public_key: string;
  peer_id: string;
  /** Canonical IPv6 text; unique. */
  ula: string;
  network: string;
  created_at: string;
}

/** Per network: the next host index the allocator tries. */
export interface MeshNetworksTable {
  network: string;
  next_idx: number;
}

/** Coordinator secrets, e.g. the join-token signing key (base64). */
export interface MeshSecretsTable {
  name: string;
  value: string;
  created_at: string;
}

export interface MeshTables {
  mesh_peers: MeshPeersTable;
  mesh_networks: MeshNetworksTable;
  mesh_secrets: MeshSecretsTable;
}
