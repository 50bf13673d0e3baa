"""Multi-stage jobs over one run directory (the quickstart), resumable stage by stage.

`stages` knows how a run directory is laid out and when a stage is finished; `quickstart`
defines the quickstart's stages on top of the library functions of every other package;
`scorecard` turns per-model metrics and stage times into the comparison the user reads.
"""
