"""Key custody (PKCS#11), and later the CA, certificates and signatures."""
