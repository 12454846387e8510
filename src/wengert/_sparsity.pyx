# Sparsity patterns and colouring (placeholder until the sparsity module lands).
