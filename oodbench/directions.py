"""Which way each metric is better, so comparisons (selection, leaderboard) never guess."""

DIRECTIONS = {
    "acc": "max",
    "gap": "min",
    "worst_group_acc": "max",
    "avg_group_acc": "max",
    "id_acc": "max",
}
