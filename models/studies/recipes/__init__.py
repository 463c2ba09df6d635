"""Recipes: how a study makes its runs. One module per recipe, registered by name in
:mod:`models.studies.recipes.registry`; :mod:`models.studies.recipes.builtin` registers the zoo's own."""
