// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title ERC-8004 identity registry for the local devnet.
/// @notice A self-contained, minimal ERC-721 whose agent events are byte-for-byte those of the
/// deployed v1 registry: same signatures, same order within a transaction. Agent ids start at 0.
/// Not upgradeable and without the EIP-712 `setAgentWallet`: the devnet needs the events, not
/// the administration. The `*Batch` functions emit many events per transaction for benchmarks.
/// Rebuild the artifacts with `npm run build:contracts` after editing this file.
interface IERC721Receiver {
    function onERC721Received(address operator, address from, uint256 tokenId, bytes calldata data)
        external
        returns (bytes4);
}

contract IdentityRegistry {
    struct MetadataEntry {
        string metadataKey;
        bytes metadataValue;
    }

    // ERC-721
    event Transfer(address indexed from, address indexed to, uint256 indexed tokenId);
    event Approval(address indexed owner, address indexed approved, uint256 indexed tokenId);
    event ApprovalForAll(address indexed owner, address indexed operator, bool approved);
    // ERC-4906
    event MetadataUpdate(uint256 _tokenId);
    // ERC-8004
    event Registered(uint256 indexed agentId, string agentURI, address indexed owner);
    event URIUpdated(uint256 indexed agentId, string newURI, address indexed updatedBy);
    event MetadataSet(
        uint256 indexed agentId, string indexed indexedMetadataKey, string metadataKey, bytes metadataValue
    );

    string public constant name = "AgentIdentity";
    string public constant symbol = "AGENT";
    string private constant AGENT_WALLET = "agentWallet";
    bytes32 private constant AGENT_WALLET_HASH = keccak256("agentWallet");

    uint256 private _nextId;
    mapping(uint256 tokenId => address) private _owners;
    mapping(address owner => uint256) private _balances;
    mapping(uint256 tokenId => address) private _tokenApprovals;
    mapping(address owner => mapping(address operator => bool)) private _operatorApprovals;
    mapping(uint256 agentId => string) private _agentURIs;
    mapping(uint256 agentId => mapping(string metadataKey => bytes)) private _metadata;
    mapping(uint256 agentId => address) private _agentWallets;

    // -- registration ------------------------------------------------------------------------

    /// @notice Mints an agent without a URI (set it later with setAgentURI).
    function register() external returns (uint256 agentId) {
        agentId = _register(msg.sender, "", false);
    }

    function register(string calldata agentURI) external returns (uint256 agentId) {
        agentId = _register(msg.sender, agentURI, true);
    }

    function register(string calldata agentURI, MetadataEntry[] calldata metadata)
        external
        returns (uint256 agentId)
    {
        agentId = _register(msg.sender, agentURI, true);
        for (uint256 i; i < metadata.length; ++i) {
            _setMetadata(agentId, metadata[i].metadataKey, metadata[i].metadataValue);
        }
    }

    /// @notice Devnet only: registers one agent per URI, owned by the caller, with consecutive ids.
    function registerBatch(string[] calldata agentURIs) external returns (uint256 firstId) {
        firstId = _nextId;
        for (uint256 i; i < agentURIs.length; ++i) {
            _register(msg.sender, agentURIs[i], true);
        }
    }

    /// @dev Emits Transfer (mint), MetadataUpdate (when a URI is set), Registered, then
    /// MetadataSet for the reserved agentWallet key (the owner's address, 20 bytes).
    function _register(address owner, string memory agentURI, bool withURI) private returns (uint256 agentId) {
        agentId = _nextId++;
        unchecked {
            _balances[owner] += 1;
        }
        _owners[agentId] = owner;
        emit Transfer(address(0), owner, agentId);
        if (withURI) {
            _agentURIs[agentId] = agentURI;
            emit MetadataUpdate(agentId);
        }
        emit Registered(agentId, agentURI, owner);
        _agentWallets[agentId] = owner;
        emit MetadataSet(agentId, AGENT_WALLET, AGENT_WALLET, abi.encodePacked(owner));
        _checkReceiver(msg.sender, address(0), owner, agentId, "");
    }

    // -- updates -----------------------------------------------------------------------------

    function setAgentURI(uint256 agentId, string calldata newURI) external {
        _setAgentURI(agentId, newURI);
    }

    /// @notice Devnet only: setAgentURI for each (agentId, newURI) pair.
    function setAgentURIBatch(uint256[] calldata agentIds, string[] calldata newURIs) external {
        require(agentIds.length == newURIs.length, "length mismatch");
        for (uint256 i; i < agentIds.length; ++i) {
            _setAgentURI(agentIds[i], newURIs[i]);
        }
    }

    function _setAgentURI(uint256 agentId, string calldata newURI) private {
        _requireAuthorized(agentId);
        _agentURIs[agentId] = newURI;
        emit URIUpdated(agentId, newURI, msg.sender);
        emit MetadataUpdate(agentId);
    }

    function setMetadata(uint256 agentId, string calldata metadataKey, bytes calldata metadataValue) external {
        _requireAuthorized(agentId);
        _setMetadata(agentId, metadataKey, metadataValue);
    }

    /// @notice Devnet only: setMetadata for each (agentId, metadataKey, metadataValue) triple.
    function setMetadataBatch(
        uint256[] calldata agentIds,
        string[] calldata metadataKeys,
        bytes[] calldata metadataValues
    ) external {
        require(agentIds.length == metadataKeys.length, "length mismatch");
        require(agentIds.length == metadataValues.length, "length mismatch");
        for (uint256 i; i < agentIds.length; ++i) {
            _requireAuthorized(agentIds[i]);
            _setMetadata(agentIds[i], metadataKeys[i], metadataValues[i]);
        }
    }

    function _setMetadata(uint256 agentId, string calldata metadataKey, bytes calldata metadataValue) private {
        require(keccak256(bytes(metadataKey)) != AGENT_WALLET_HASH, "reserved key");
        _metadata[agentId][metadataKey] = metadataValue;
        emit MetadataSet(agentId, metadataKey, metadataKey, metadataValue);
    }

    /// @notice Clears the agent wallet (MetadataSet with an empty value).
    function unsetAgentWallet(uint256 agentId) external {
        _requireAuthorized(agentId);
        _clearAgentWallet(agentId);
    }

    function _clearAgentWallet(uint256 agentId) private {
        delete _agentWallets[agentId];
        emit MetadataSet(agentId, AGENT_WALLET, AGENT_WALLET, "");
    }

    // -- reads -------------------------------------------------------------------------------

    function getMetadata(uint256 agentId, string calldata metadataKey) external view returns (bytes memory) {
        if (keccak256(bytes(metadataKey)) == AGENT_WALLET_HASH) {
            address wallet = _agentWallets[agentId];
            return wallet == address(0) ? bytes("") : abi.encodePacked(wallet);
        }
        return _metadata[agentId][metadataKey];
    }

    function getAgentWallet(uint256 agentId) external view returns (address) {
        ownerOf(agentId);
        return _agentWallets[agentId];
    }

    function tokenURI(uint256 tokenId) external view returns (string memory) {
        ownerOf(tokenId);
        return _agentURIs[tokenId];
    }

    /// @notice How many agents exist; the next agent id.
    function totalAgents() external view returns (uint256) {
        return _nextId;
    }

    function getVersion() external pure returns (string memory) {
        return "devnet-1";
    }

    function supportsInterface(bytes4 interfaceId) external pure returns (bool) {
        return interfaceId == 0x01ffc9a7 // ERC-165
            || interfaceId == 0x80ac58cd // ERC-721
            || interfaceId == 0x5b5e139f // ERC-721 metadata
            || interfaceId == 0x49064906; // ERC-4906
    }

    // -- ERC-721 -----------------------------------------------------------------------------

    function balanceOf(address owner) external view returns (uint256) {
        require(owner != address(0), "zero address");
        return _balances[owner];
    }

    function ownerOf(uint256 tokenId) public view returns (address owner) {
        owner = _owners[tokenId];
        require(owner != address(0), "agent does not exist");
    }

    function approve(address to, uint256 tokenId) external {
        address owner = ownerOf(tokenId);
        require(msg.sender == owner || _operatorApprovals[owner][msg.sender], "not authorized");
        _tokenApprovals[tokenId] = to;
        emit Approval(owner, to, tokenId);
    }

    function getApproved(uint256 tokenId) public view returns (address) {
        ownerOf(tokenId);
        return _tokenApprovals[tokenId];
    }

    function setApprovalForAll(address operator, bool approved) external {
        require(operator != address(0), "zero operator");
        _operatorApprovals[msg.sender][operator] = approved;
        emit ApprovalForAll(msg.sender, operator, approved);
    }

    function isApprovedForAll(address owner, address operator) public view returns (bool) {
        return _operatorApprovals[owner][operator];
    }

    function transferFrom(address from, address to, uint256 tokenId) public {
        _transfer(from, to, tokenId);
    }

    function safeTransferFrom(address from, address to, uint256 tokenId) external {
        safeTransferFrom(from, to, tokenId, "");
    }

    function safeTransferFrom(address from, address to, uint256 tokenId, bytes memory data) public {
        _transfer(from, to, tokenId);
        _checkReceiver(msg.sender, from, to, tokenId, data);
    }

    /// @notice Devnet only: transferFrom(from, to, id) for each id.
    function transferFromBatch(address from, address to, uint256[] calldata tokenIds) external {
        for (uint256 i; i < tokenIds.length; ++i) {
            _transfer(from, to, tokenIds[i]);
        }
    }

    /// @dev Transfer, then (to another owner) the agent wallet is cleared, as in the deployed
    /// registry: MetadataSet(agentWallet, "").
    function _transfer(address from, address to, uint256 tokenId) private {
        require(to != address(0), "zero address");
        address owner = ownerOf(tokenId);
        require(owner == from, "wrong owner");
        require(
            msg.sender == owner || _operatorApprovals[owner][msg.sender] || _tokenApprovals[tokenId] == msg.sender,
            "not authorized"
        );
        delete _tokenApprovals[tokenId];
        unchecked {
            _balances[from] -= 1;
            _balances[to] += 1;
        }
        _owners[tokenId] = to;
        emit Transfer(from, to, tokenId);
        if (from != to) {
            _clearAgentWallet(tokenId);
        }
    }

    function _requireAuthorized(uint256 agentId) private view {
        address owner = ownerOf(agentId);
        require(
            msg.sender == owner || _operatorApprovals[owner][msg.sender] || _tokenApprovals[agentId] == msg.sender,
            "not authorized"
        );
    }

    function _checkReceiver(address operator, address from, address to, uint256 tokenId, bytes memory data)
        private
    {
        if (to.code.length == 0) {
            return;
        }
        try IERC721Receiver(to).onERC721Received(operator, from, tokenId, data) returns (bytes4 answer) {
            require(answer == IERC721Receiver.onERC721Received.selector, "receiver rejected the agent");
        } catch {
            revert("receiver rejected the agent");
        }
    }
}
