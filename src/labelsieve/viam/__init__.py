"""The Viam edge: conversions and the error seam between labelsieve's Python API and Viam resources."""
