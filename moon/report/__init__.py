"""`moon report`: one self-contained HTML page that shows what a training run learned."""
