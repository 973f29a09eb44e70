"""pcloud: calorimeter data as sparse point clouds."""
__version__ = "0.1.0"
