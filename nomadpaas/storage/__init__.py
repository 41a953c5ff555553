"""Blob storage: content-addressed keys over S3 (the only boto3 user is s3.py)."""
