//! Spreading the clusters among replicas: one Lease per cluster.
