//! kargo-sources: artifact discovery (OCI images, Helm charts, git) for Warehouses.
