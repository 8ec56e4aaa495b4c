"""SFTP transport (paramiko): ``transport`` deposits and picks up, ``known_hosts`` pins the
server's key, ``client`` holds paramiko's SFTP client and its one private extension."""

from gateway.transport.sftp.known_hosts import describe_key
from gateway.transport.sftp.transport import PREFERRED_CIPHERS, SftpSettings, SftpTransport, sftp_settings

__all__ = ["PREFERRED_CIPHERS", "SftpSettings", "SftpTransport", "describe_key", "sftp_settings"]
