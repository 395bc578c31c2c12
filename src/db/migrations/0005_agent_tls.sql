-- How the hub trusts an agent it reaches over https://. `tls_ca`: CA certificates (PEM) that
-- alone may sign the agent's certificate. `tls_pin`: the SHA-256 of the agent's certificate
-- (64 lowercase hex digits), accepted whoever signed it. Both NULL: the public web PKI.
ALTER TABLE agents ADD COLUMN tls_ca TEXT;
ALTER TABLE agents ADD COLUMN tls_pin TEXT;
