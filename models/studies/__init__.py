"""Studies: the study grammar expanded into runs, each run executed into its folder, and the study's tables and
figures. The YAML files beside the code are the shipped studies."""
