//! kargo-steps: the built-in promotion steps.
