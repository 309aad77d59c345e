"""Airflow-side code of the medallion pipeline: the job-task factory, DAG defaults and assets.

Kept in plugins/ so Airflow puts it on sys.path for DAG files, workers and the triggerer alike.
"""
