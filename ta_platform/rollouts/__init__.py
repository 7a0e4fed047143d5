"""The rollouts data layer: the math-rollouts Hub layout, strict trace parsing, local and Hub sources,
the sentence split rule, and the embedded default dataset generator. No Dagster imports here."""
