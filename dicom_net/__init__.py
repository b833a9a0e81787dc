"""dicom_net package."""
