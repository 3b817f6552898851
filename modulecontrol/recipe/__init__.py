"""Recipes: YAML procedures run against a plant, and the condition language they use.

The condition language lives in :mod:`modulecontrol.recipe.expr`.
"""
