"""Objects that travel with the images, read without Qt: structured reports, key object
selections, presentation states, segmentations, RT structure sets, encapsulated PDFs, tags."""
