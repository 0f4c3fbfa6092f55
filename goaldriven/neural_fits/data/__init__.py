"""Neural recordings: the NeuralData format and its HDF5 file (neural_data.py, checks.py, hdf5_io.py), converters
from public layouts (converters.py, brainscore_netcdf.py) and simulated recordings of known truth (synthetic.py)."""
