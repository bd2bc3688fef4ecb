"""Tables and figures made from run folders alone: `runs` reads the folders, `tables` and
`figures` turn their records into the paper's tables and plots."""
